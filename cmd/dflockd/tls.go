package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"
)

// certReloader serves the key pair named by --tls-cert/--tls-key through
// tls.Config.GetCertificate, so that a reload (SIGHUP) swaps it for new
// handshakes while established connections carry on.
type certReloader struct {
	certFile, keyFile string
	cur               atomic.Pointer[tls.Certificate]
}

// newCertReloader loads the pair once; it fails if that does not work.
func newCertReloader(certFile, keyFile string) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile}
	if err := r.reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// reload reads the pair from disk again. On failure the pair in use is
// kept and the error returned.
func (r *certReloader) reload() error {
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("--tls-cert/--tls-key: %w", err)
	}
	r.cur.Store(&cert)
	return nil
}

// getCertificate implements tls.Config.GetCertificate.
func (r *certReloader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.cur.Load(), nil
}

// notAfter is the expiry of the certificate in use.
func (r *certReloader) notAfter() time.Time {
	if leaf := r.cur.Load().Leaf; leaf != nil {
		return leaf.NotAfter
	}
	return time.Time{}
}

// tlsSetup is the server's TLS configuration and the reloader behind it.
type tlsSetup struct {
	cfg   *tls.Config
	certs *certReloader
}

// loadTLS loads the key pair and the client CA pool. It returns nil when
// TLS is off. The config has no static Certificates: GetCertificate is
// consulted for every handshake only when Certificates is empty.
func (c *ServeCmd) loadTLS() (*tlsSetup, error) {
	if c.TLSCert == "" && c.TLSKey == "" {
		return nil, nil
	}
	certs, err := newCertReloader(c.TLSCert, c.TLSKey)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{GetCertificate: certs.getCertificate, MinVersion: tls.VersionTLS12}
	if c.TLSClientCA != "" {
		pool, err := loadCertPool(c.TLSClientCA)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.flagRef("tls-client-ca"), err)
		}
		cfg.ClientAuth, cfg.ClientCAs = tls.RequireAndVerifyClientCert, pool
	}
	return &tlsSetup{cfg: cfg, certs: certs}, nil
}

// loadCertPool reads a PEM bundle of CA certificates.
func loadCertPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, errors.New("no PEM certificate found in " + path)
	}
	return pool, nil
}
