package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// genCert runs `dflockd gen-cert` with args and fails the test unless it
// exits 0. It returns the output directory.
func genCert(t *testing.T, args ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "certs")
	var stdout, stderr bytes.Buffer
	args = append([]string{"gen-cert", "--out", dir}, args...)
	if code := run(t.Context(), args, &stdout, &stderr, env(nil)); code != 0 {
		t.Fatalf("%q: exit %d: %s", args, code, stderr.String())
	}
	if strings.Count(stdout.String(), "wrote ") != 6 {
		t.Errorf("stdout %q; want six files listed", stdout.String())
	}
	return dir
}

// readCert parses the single certificate in a PEM file.
func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, rest := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("%s: not exactly one PEM certificate", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return c
}

// TestGenCert checks every file gen-cert writes: modes, key types, key
// pairs that match, and chains to the CA for the right usage and names.
func TestGenCert(t *testing.T) {
	dir := genCert(t, "--host", "db.example,10.0.0.5", "--host", "::1", "--host", "[fe80::1]")
	for name, mode := range map[string]os.FileMode{
		"ca.pem": 0o644, "ca-key.pem": 0o600, "server.pem": 0o644, "server-key.pem": 0o600,
		"client.pem": 0o644, "client-key.pem": 0o600,
	} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %#o, want %#o", name, fi.Mode().Perm(), mode)
		}
	}
	for _, pair := range [][2]string{{"ca.pem", "ca-key.pem"}, {"server.pem", "server-key.pem"}, {"client.pem", "client-key.pem"}} {
		kp, err := tls.LoadX509KeyPair(filepath.Join(dir, pair[0]), filepath.Join(dir, pair[1]))
		if err != nil {
			t.Fatalf("%s: %v", pair[0], err)
		}
		k, ok := kp.PrivateKey.(*ecdsa.PrivateKey)
		if !ok || k.Curve != elliptic.P256() {
			t.Errorf("%s: key %T, want ECDSA P-256", pair[1], kp.PrivateKey)
		}
	}

	ca := readCert(t, filepath.Join(dir, "ca.pem"))
	if !ca.IsCA || ca.KeyUsage&x509.KeyUsageCertSign == 0 || ca.CheckSignatureFrom(ca) != nil {
		t.Errorf("ca.pem: IsCA %v usage %v", ca.IsCA, ca.KeyUsage)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)

	srv := readCert(t, filepath.Join(dir, "server.pem"))
	if srv.IsCA {
		t.Error("server.pem is a CA")
	}
	for _, host := range []string{"db.example", "10.0.0.5", "::1", "fe80::1"} {
		if _, err := srv.Verify(x509.VerifyOptions{Roots: roots, DNSName: host, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("server.pem for %s: %v", host, err)
		}
	}
	if err := srv.VerifyHostname("other.example"); err == nil {
		t.Error("server.pem valid for a host not asked for")
	}
	if !slices.Equal(srv.DNSNames, []string{"db.example"}) || len(srv.IPAddresses) != 3 || srv.Subject.CommonName != "db.example" {
		t.Errorf("server.pem: DNS %v IPs %v CN %q", srv.DNSNames, srv.IPAddresses, srv.Subject.CommonName)
	}
	if _, err := srv.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Error("server.pem usable as a client certificate")
	}

	cli := readCert(t, filepath.Join(dir, "client.pem"))
	if cli.Subject.CommonName != "dflockd-client" || cli.IsCA {
		t.Errorf("client.pem: CN %q IsCA %v", cli.Subject.CommonName, cli.IsCA)
	}
	if _, err := cli.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client.pem does not chain to the CA for client auth: %v", err)
	}
	if _, err := cli.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Error("client.pem usable as a server certificate")
	}
	// Serials differ; validity brackets now.
	now := time.Now()
	if ca.SerialNumber.Cmp(srv.SerialNumber) == 0 || srv.SerialNumber.Cmp(cli.SerialNumber) == 0 {
		t.Error("serial numbers repeat")
	}
	for _, c := range []*x509.Certificate{ca, srv, cli} {
		if now.Before(c.NotBefore) || now.After(c.NotAfter) || c.NotAfter.After(ca.NotAfter) {
			t.Errorf("%s: valid %v to %v", c.Subject.CommonName, c.NotBefore, c.NotAfter)
		}
	}
}

func TestGenCertDefaultHosts(t *testing.T) {
	srv := readCert(t, filepath.Join(genCert(t), "server.pem"))
	var ips []string
	for _, ip := range srv.IPAddresses {
		ips = append(ips, ip.String())
	}
	if !slices.Equal(srv.DNSNames, []string{"localhost"}) || !slices.Equal(ips, []string{"127.0.0.1", "::1"}) {
		t.Errorf("DNS %v IPs %v; want localhost, 127.0.0.1, ::1", srv.DNSNames, ips)
	}
	if !srv.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) {
		t.Errorf("first IP %v", srv.IPAddresses[0])
	}
}

// Existing files are never overwritten without --force, and nothing is
// written then.
func TestGenCertRefusesToOverwrite(t *testing.T) {
	dir := genCert(t)
	before, err := os.ReadFile(filepath.Join(dir, "ca-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "client.pem")); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := run(t.Context(), []string{"gen-cert", "--out", dir}, &stdout, &stderr, env(nil)); code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if !strings.Contains(stderr.String(), "--force") {
		t.Errorf("stderr %q", stderr.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "client.pem")); !os.IsNotExist(err) {
		t.Errorf("client.pem written by a refused run: %v", err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, "ca-key.pem"))
	if !bytes.Equal(before, after) {
		t.Fatal("ca-key.pem changed")
	}
	// --force replaces them all, and a loosened key file gets 0600 back.
	if err := os.Chmod(filepath.Join(dir, "ca-key.pem"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code := run(t.Context(), []string{"gen-cert", "--out", dir, "--force"}, &stdout, &stderr, env(nil)); code != 0 {
		t.Fatalf("--force: exit %d: %s", code, stderr.String())
	}
	after, _ = os.ReadFile(filepath.Join(dir, "ca-key.pem"))
	fi, _ := os.Stat(filepath.Join(dir, "ca-key.pem"))
	if bytes.Equal(before, after) || fi.Mode().Perm() != 0o600 {
		t.Errorf("after --force: key changed %v, mode %#o", !bytes.Equal(before, after), fi.Mode().Perm())
	}
}

func TestGenCertErrors(t *testing.T) {
	for _, args := range [][]string{
		{"gen-cert"}, // --out is required
		{"gen-cert", "--out", t.TempDir(), "--host", ""},
		{"gen-cert", "--out", t.TempDir(), "--host", "a,,b"},
		{"gen-cert", "--out", t.TempDir(), "--debug"}, // a server flag
	} {
		var stdout, stderr bytes.Buffer
		if code := run(t.Context(), args, &stdout, &stderr, env(nil)); code != 1 || stderr.Len() == 0 {
			t.Errorf("%q: exit %d, stderr %q", args, code, stderr.String())
		}
	}
}
