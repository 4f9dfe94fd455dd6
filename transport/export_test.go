package transport

// Unregister removes name from the registry so that tests can register
// throw-away transports without leaking them into other tests.
func Unregister(name string) {
	registryMu.Lock()
	defer registryMu.Unlock()
	delete(registry, name)
}
