//go:build !noquic

package transport

// QUICCloseLinger exposes quicCloseLinger to the tests.
const QUICCloseLinger = quicCloseLinger
