// Package testutil holds helpers shared by tests across dflockd packages.
package testutil

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"testing"

	"github.com/dflockd/dflockd/internal/selfsigned"
)

// SelfSigned returns a server config holding a fresh in-memory self-signed
// ECDSA P-256 certificate, and a client config that trusts exactly that
// certificate (see selfsigned.Configs).
func SelfSigned(t testing.TB, hosts ...string) (serverCfg, clientCfg *tls.Config) {
	t.Helper()
	serverCfg, clientCfg, err := selfsigned.Configs(hosts...)
	if err != nil {
		t.Fatalf("testutil: %v", err)
	}
	return serverCfg, clientCfg
}

// SelfSignedPEM returns the PEM-encoded certificate and PKCS #8 private
// key of a fresh self-signed pair (see selfsigned.PEM).
func SelfSignedPEM(t testing.TB, hosts ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	certPEM, keyPEM, err := selfsigned.PEM(hosts...)
	if err != nil {
		t.Fatalf("testutil: %v", err)
	}
	return certPEM, keyPEM
}

// SelfSignedFiles writes a SelfSignedPEM pair into t.TempDir() and returns
// the file paths, for code that loads certificates from disk.
func SelfSignedFiles(t testing.TB, hosts ...string) (certFile, keyFile string) {
	t.Helper()
	certPEM, keyPEM := SelfSignedPEM(t, hosts...)
	dir := t.TempDir()
	certFile = filepath.Join(dir, "cert.pem")
	keyFile = filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatalf("testutil: %v", err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatalf("testutil: %v", err)
	}
	return certFile, keyFile
}
