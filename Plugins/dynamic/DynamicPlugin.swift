// DynamicPlugin: moert plugin (placeholder until implemented).
import CMoert

@c @implementation public func moert_plugin_init(_ host: UnsafePointer<moert_host_api>!, _ context: UnsafeMutableRawPointer!) -> moert_status {
    MOERT_OK
}
