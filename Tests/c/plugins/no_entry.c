/* no_entry: a shared library that is not a moert plugin (it lacks moert_plugin_init). */
int not_a_plugin(void) { return 42; }
