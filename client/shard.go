package client

import "hash/crc32"

// DefaultServer is the server used when Lock.Servers or
// Semaphore.Servers is empty.
const DefaultServer = "127.0.0.1:6388"

// A ShardFunc picks the server, as an index in [0, numServers), that owns
// key. Every client of a cluster must use the same function and the same
// server list: there is no replication, each key lives on exactly one
// server.
type ShardFunc func(key string, numServers int) int

// CRC32Shard is the default ShardFunc: the CRC-32 (IEEE) of the key's
// bytes modulo numServers, or 0 when numServers <= 0. It matches the other
// dflockd clients (Python's zlib.crc32(key) % n).
func CRC32Shard(key string, numServers int) int {
	if numServers <= 0 {
		return 0
	}
	return int(crc32.ChecksumIEEE([]byte(key)) % uint32(numServers))
}
