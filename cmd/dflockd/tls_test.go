package main

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dflockd/dflockd/internal/testutil"
)

// servedSerial returns the serial number of the certificate the reloader
// hands to a handshake.
func servedSerial(t *testing.T, r *certReloader) string {
	t.Helper()
	cert, err := r.getCertificate(&tls.ClientHelloInfo{})
	if err != nil || cert == nil {
		t.Fatalf("getCertificate: %v, %v", cert, err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf.SerialNumber.String()
}

// The reloader swaps the pair on a successful reload and keeps the old
// one when the files are broken or gone; reloadTLS logs either outcome.
func TestCertReloader(t *testing.T) {
	certA, keyA := testutil.SelfSignedPEM(t)
	certB, keyB := testutil.SelfSignedPEM(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	write := func(cert, key []byte) {
		t.Helper()
		if err := os.WriteFile(certFile, cert, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(keyFile, key, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(certA, keyA)
	r, err := newCertReloader(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ts := &tlsSetup{certs: r}
	a := servedSerial(t, r)
	if a != serialOf(t, certA) {
		t.Fatalf("serves %s; want certificate A", a)
	}

	write(certB, keyB)
	var log testutil.SyncBuffer
	reloadTLS(ts, newLogger(&log, false))
	if got := servedSerial(t, r); got != serialOf(t, certB) {
		t.Fatalf("after reload serves %s; want certificate B", got)
	}
	if !strings.Contains(log.String(), `msg="tls certificate reloaded"`) || !strings.Contains(log.String(), "not_after=") {
		t.Errorf("log %q", log.String())
	}

	for name, broken := range map[string]func(){
		"mismatched key": func() { write(certA, keyB) },
		"garbage":        func() { write([]byte("garbage"), []byte("garbage")) },
		"missing":        func() { os.Remove(certFile) },
	} {
		broken()
		if err := r.reload(); err == nil || !strings.Contains(err.Error(), "--tls-cert/--tls-key") {
			t.Errorf("%s: reload = %v", name, err)
		}
		if got := servedSerial(t, r); got != serialOf(t, certB) {
			t.Fatalf("%s: serves %s; want certificate B kept", name, got)
		}
	}
	log = testutil.SyncBuffer{}
	reloadTLS(ts, newLogger(&log, false))
	if !strings.Contains(log.String(), "level=ERROR") || !strings.Contains(log.String(), "keeping the current certificate") {
		t.Errorf("log %q", log.String())
	}
	log = testutil.SyncBuffer{}
	reloadTLS(nil, newLogger(&log, false))
	if !strings.Contains(log.String(), "no TLS certificate to reload") {
		t.Errorf("log %q", log.String())
	}

	// The initial load must work.
	if _, err := newCertReloader(certFile, keyFile); err == nil {
		t.Error("newCertReloader with a missing file succeeded")
	}
}
