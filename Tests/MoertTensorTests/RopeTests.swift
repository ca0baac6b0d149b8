// RopeTests: rotary embedding frequencies against transformers' _compute_yarn_parameters, and both pairings.

import Foundation
import Testing
@testable import MoertTensor

@Suite("Rope")
struct RopeTests {
    /// inv_freq and attention_factor printed by transformers 5.25 `_compute_yarn_parameters` for the same
    /// parameters (float32; compared to 1e-6 relative, a few ulps of float32's pow).
    func expectClose(_ a: [Float], _ b: [Float]) {
        #expect(a.count == b.count)
        for (x, y) in zip(a, b) { #expect(abs(x - y) <= 1e-6 * abs(y), "\(x) vs \(y)") }
    }

    @Test("YaRN with truncation, mscale and mscale_all_dim (the deepseek fixtures' rope)")
    func yarnTruncated() {
        var y = YaRNParameters(factor: 4, originalMaxPositionEmbeddings: 16)
        y.betaFast = 4
        y.betaSlow = 1
        y.mscale = 1
        y.mscaleAllDim = 0.8
        let rope = Rope(RopeConfig(theta: 10000, rotaryDim: 8, scaling: .yarn(y)))
        expectClose(rope.invFreq, [1.0, 0.02500000037252903, 0.0024999999441206455, 0.0002500000118743628])
        #expect(abs(Double(rope.attentionFactor) - 1.0249579607969668) <= 1e-7)
    }

    @Test("YaRN without truncation (gpt-oss's truncate: false): a fractional ramp between the bounds")
    func yarnUntruncated() {
        var y = YaRNParameters(factor: 32, originalMaxPositionEmbeddings: 4096)
        y.truncate = false
        let rope = Rope(RopeConfig(theta: 150000, rotaryDim: 64, scaling: .yarn(y)))
        expectClose(rope.invFreq, [
            1.0, 0.6890442967414856, 0.4747820496559143, 0.32714587450027466, 0.22541800141334534,
            0.15532298386096954, 0.1070244237780571, 0.07374456524848938, 0.05081327259540558, 0.031705696135759354,
            0.019334999844431877, 0.011592049151659012, 0.006794959306716919, 0.0038603590801358223,
            0.002093792660161853, 0.00105260219424963, 0.0004564839182421565, 0.00012931869423482567,
            3.830881178146228e-05, 2.6396468456368893e-05, 1.818833698052913e-05, 1.253256959898863e-05,
            8.635495760245249e-06, 5.95023948335438e-06, 4.099978468730114e-06, 2.8250667583051836e-06,
            1.9465962850517826e-06, 1.3412909538601525e-06, 9.242089618055616e-07, 6.368209142237902e-07,
            4.38797854940276e-07, 3.023511396804679e-07,
        ])
        #expect(abs(Double(rope.attentionFactor) - 1.3465735902799727) <= 1e-7)
    }

    @Test("DeepSeek's softmax scale factor is mscale(factor, mscale_all_dim)² (yarn_apply_mscale)")
    func softmaxScale() {
        var y = YaRNParameters(factor: 4, originalMaxPositionEmbeddings: 16)
        y.mscaleAllDim = 0.8
        // transformers: yarn_apply_mscale(rope_parameters, 24 ** -0.5) = 0.25191097422871067
        #expect(abs(y.softmaxScaleFactor / 24.0.squareRoot() - 0.25191097422871067) <= 1e-15)
        y.mscaleAllDim = nil
        #expect(y.softmaxScaleFactor == 1)
    }

    @Test("halves rotate (x[i], x[i + d/2]); interleaved rotate (x[2i], x[2i + 1]); stride skips the rest of a head")
    func pairings() {
        let config = RopeConfig(theta: 100, rotaryDim: 4)
        var interleavedConfig = config
        interleavedConfig.pairing = .interleaved
        let halves = Rope(config), interleaved = Rope(interleavedConfig)
        let x: [Float] = [1, 2, 3, 4, 9]  // a head of 5: 4 rotated values, then one left alone
        func rotated(_ rope: Rope) -> [Float] {
            var v = x
            v.withUnsafeMutableBufferPointer { rope.apply($0.baseAddress!, heads: 1, stride: 5, position: 3) }
            return v
        }
        // angles 3 · inv_freq with inv_freq = [1, 100^-1/2]
        let a0: Float = 3, a1: Float = 3 * (1 / powf(100, 0.5))
        let h = rotated(halves), i = rotated(interleaved)
        #expect(abs(h[0] - (1 * cosf(a0) - 3 * sinf(a0))) < 1e-6 && abs(h[2] - (3 * cosf(a0) + 1 * sinf(a0))) < 1e-6)
        #expect(abs(h[1] - (2 * cosf(a1) - 4 * sinf(a1))) < 1e-6 && abs(h[3] - (4 * cosf(a1) + 2 * sinf(a1))) < 1e-6)
        #expect(abs(i[0] - (1 * cosf(a0) - 2 * sinf(a0))) < 1e-6 && abs(i[1] - (2 * cosf(a0) + 1 * sinf(a0))) < 1e-6)
        #expect(abs(i[2] - (3 * cosf(a1) - 4 * sinf(a1))) < 1e-6 && abs(i[3] - (4 * cosf(a1) + 3 * sinf(a1))) < 1e-6)
        #expect(h[4] == 9 && i[4] == 9)
    }

    @Test("shift moves rotated keys without applying YaRN's attention factor again")
    func shift() {
        var y = YaRNParameters(factor: 4, originalMaxPositionEmbeddings: 16)
        y.attentionFactor = 1.5
        let rope = Rope(RopeConfig(theta: 10000, rotaryDim: 8, scaling: .yarn(y)))
        var a: [Float] = [1, 2, 3, 4, 5, 6, 7, 8], b = a
        a.withUnsafeMutableBufferPointer { rope.apply($0.baseAddress!, heads: 1, stride: 8, position: 7) }
        b.withUnsafeMutableBufferPointer {
            rope.apply($0.baseAddress!, heads: 1, stride: 8, position: 10)
            rope.shift($0.baseAddress!, heads: 1, stride: 8, by: -3)
        }
        for (u, v) in zip(a, b) { #expect(abs(u - v) <= 1e-5 * max(1, abs(u))) }
    }
}
