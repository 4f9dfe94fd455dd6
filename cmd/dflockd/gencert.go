package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Validity of the certificates gen-cert writes.
const (
	caValidity   = 10 * 365 * 24 * time.Hour
	leafValidity = 825 * 24 * time.Hour // the longest most TLS clients accept
)

// Names of the files gen-cert writes, in the order it writes them.
const (
	caCertFile     = "ca.pem"
	caKeyFile      = "ca-key.pem"
	serverCertFile = "server.pem"
	serverKeyFile  = "server-key.pem"
	clientCertFile = "client.pem"
	clientKeyFile  = "client-key.pem"
)

// clientCommonName is the subject of the client certificate; with
// --tls-client-ca the server knows its holder as "cert:dflockd-client".
const clientCommonName = "dflockd-client"

// GenCertCmd writes a private CA, a server certificate and a client
// certificate signed by it: enough for TLS, mutual TLS and QUIC.
type GenCertCmd struct {
	Host  []string `name:"host" default:"localhost,127.0.0.1,::1" placeholder:"NAME" help:"DNS name or IP address the server certificate is valid for; repeatable or comma-separated (default localhost,127.0.0.1,::1)."`
	Out   string   `name:"out" required:"" placeholder:"DIR" help:"Directory to write ca.pem, ca-key.pem, server.pem, server-key.pem, client.pem and client-key.pem to (created if missing)."`
	Force bool     `name:"force" help:"Overwrite files that already exist."`
}

// pemFile is one file gen-cert writes.
type pemFile struct {
	name string
	mode fs.FileMode
	data []byte
}

// run generates the certificates and writes them to c.Out, listing the
// files on w. Without --force it writes nothing if any file exists.
func (c *GenCertCmd) run(w io.Writer) error {
	files, err := c.generate(time.Now())
	if err != nil {
		return err
	}
	if err := os.MkdirAll(c.Out, 0o755); err != nil {
		return fmt.Errorf("create output directory: %w", err)
	}
	if !c.Force {
		for _, f := range files {
			p := filepath.Join(c.Out, f.name)
			if _, err := os.Lstat(p); err == nil {
				return fmt.Errorf("%s exists (use --force to overwrite)", p)
			}
		}
	}
	for _, f := range files {
		p := filepath.Join(c.Out, f.name)
		if err := writeFile(p, f.data, f.mode, c.Force); err != nil {
			return err
		}
		fmt.Fprintln(w, "wrote", p)
	}
	fmt.Fprintf(w, "server certificate for %s; client certificate for %q\n", strings.Join(c.Host, ", "), clientCommonName)
	return nil
}

// writeFile writes data to path with exactly mode (whatever the umask or
// an overwritten file had).
func writeFile(path string, data []byte, mode fs.FileMode, overwrite bool) error {
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if overwrite {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, mode)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("chmod %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// generate makes the three key pairs and certificates, valid from an hour
// before now.
func (c *GenCertCmd) generate(now time.Time) ([]pemFile, error) {
	var hosts []string
	for _, h := range c.Host {
		h = strings.TrimSpace(h)
		if len(h) >= 2 && h[0] == '[' && h[len(h)-1] == ']' {
			h = h[1 : len(h)-1] // [::1]
		}
		if h == "" {
			return nil, errors.New("--host: empty name")
		}
		hosts = append(hosts, h)
	}
	if len(hosts) == 0 {
		return nil, errors.New("--host: at least one name is needed")
	}
	notBefore := now.Add(-time.Hour)

	caKey, err := newKey()
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "dflockd CA", Organization: []string{"dflockd"}},
		NotBefore:             notBefore,
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, ca, err := sign(caTmpl, nil, caKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}

	serverKey, err := newKey()
	if err != nil {
		return nil, err
	}
	serverTmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: hosts[0], Organization: []string{"dflockd"}},
		NotBefore:   notBefore,
		NotAfter:    now.Add(leafValidity),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			serverTmpl.IPAddresses = append(serverTmpl.IPAddresses, ip)
		} else {
			serverTmpl.DNSNames = append(serverTmpl.DNSNames, h)
		}
	}
	serverDER, _, err := sign(serverTmpl, ca, serverKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("server certificate: %w", err)
	}

	clientKey, err := newKey()
	if err != nil {
		return nil, err
	}
	clientTmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: clientCommonName, Organization: []string{"dflockd"}},
		NotBefore:   notBefore,
		NotAfter:    now.Add(leafValidity),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	clientDER, _, err := sign(clientTmpl, ca, clientKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("client certificate: %w", err)
	}

	files := make([]pemFile, 0, 6)
	for _, p := range []struct {
		cert, key string
		der       []byte
		priv      *ecdsa.PrivateKey
	}{
		{caCertFile, caKeyFile, caDER, caKey},
		{serverCertFile, serverKeyFile, serverDER, serverKey},
		{clientCertFile, clientKeyFile, clientDER, clientKey},
	} {
		keyDER, err := x509.MarshalPKCS8PrivateKey(p.priv)
		if err != nil {
			return nil, fmt.Errorf("encode key: %w", err)
		}
		files = append(files,
			pemFile{p.cert, 0o644, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.der})},
			pemFile{p.key, 0o600, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})})
	}
	return files, nil
}

// newKey generates an ECDSA P-256 key.
func newKey() (*ecdsa.PrivateKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	return k, nil
}

// sign gives tmpl a random serial number and signs it with signer as
// parent (self-signed when parent is nil). It returns the DER bytes and the
// parsed certificate.
func sign(tmpl, parent *x509.Certificate, key *ecdsa.PrivateKey, signer crypto.Signer) ([]byte, *x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, fmt.Errorf("serial number: %w", err)
	}
	tmpl.SerialNumber = serial
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return der, cert, nil
}
