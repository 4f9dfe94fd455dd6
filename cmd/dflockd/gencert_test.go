package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dflockd/dflockd/cluster"
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
	for _, host := range []string{"db.example", "10.0.0.5", "::1", "fe80::1", "localhost", "127.0.0.1"} {
		if _, err := srv.Verify(x509.VerifyOptions{Roots: roots, DNSName: host, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("server.pem for %s: %v", host, err)
		}
	}
	if err := srv.VerifyHostname("other.example"); err == nil {
		t.Error("server.pem valid for a host not asked for")
	}
	// --host adds to the defaults (::1 is named twice but listed once).
	if !slices.Equal(srv.DNSNames, []string{"localhost", "db.example"}) || len(srv.IPAddresses) != 4 || srv.Subject.CommonName != "db.example" {
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
	// --force replaces the server and client files (a loosened key file
	// gets 0600 back) and keeps the CA.
	serverKey, _ := os.ReadFile(filepath.Join(dir, "server-key.pem"))
	if err := os.Chmod(filepath.Join(dir, "server-key.pem"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code := run(t.Context(), []string{"gen-cert", "--out", dir, "--force"}, &stdout, &stderr, env(nil)); code != 0 {
		t.Fatalf("--force: exit %d: %s", code, stderr.String())
	}
	after, _ = os.ReadFile(filepath.Join(dir, "server-key.pem"))
	fi, _ := os.Stat(filepath.Join(dir, "server-key.pem"))
	if bytes.Equal(serverKey, after) || fi.Mode().Perm() != 0o600 {
		t.Errorf("after --force: key changed %v, mode %#o", !bytes.Equal(serverKey, after), fi.Mode().Perm())
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "ca-key.pem")); !bytes.Equal(before, after) {
		t.Error("--force replaced the CA")
	}
}

func TestGenCertErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--host", ""}, "gen-cert: --host: empty name\n"},
		{[]string{"--host", "a,,b"}, "gen-cert: --host: empty name\n"},
		{[]string{"--host", " "}, "gen-cert: --host: empty name\n"},
		{[]string{"--host", "bad name"}, `gen-cert: --host: "bad name" is not a DNS name or IP address: ' ' is not allowed (letters, digits, '-' and '_' are)` + "\n"},
		{[]string{"--host", "db!.example"}, `"db!.example" is not a DNS name or IP address: '!' is not allowed`},
		{[]string{"--host", "a..b"}, `"a..b" is not a DNS name or IP address: empty label`},
		{[]string{"--host", "example.com."}, "empty label"},
		{[]string{"--host=-db.example"}, "starts or ends with '-'"},
		{[]string{"--host", strings.Repeat("a", 64) + ".example"}, "longer than 63"},
		{[]string{"--host", strings.Repeat("a.", 127) + "ab"}, "longer than 253"},
		{[]string{"--host", "https://db.example"}, "without a scheme or port"},
		{[]string{"--host", "db.example:6389"}, "without a scheme or port"},
		{[]string{"--host", "fe80::1%eth0"}, "not a DNS name or IP address"},
		{[]string{"--host", "a.*.example"}, `'*' is not allowed`},
		{[]string{"--host", "*"}, `'*' is not allowed`},
		{[]string{"--client-name", ""}, "gen-cert: --client-name: empty name\n"},
		{[]string{"--client-name", "  "}, "gen-cert: --client-name: empty name\n"},
		{[]string{"--client-name", strings.Repeat("c", 65)}, "longer than 64 bytes"},
		{[]string{"--client-name", "a\x01b"}, "control character"},
		{[]string{"--debug"}, "--debug"}, // a server flag
	} {
		dir := filepath.Join(t.TempDir(), "certs")
		args := append([]string{"gen-cert", "--out", dir}, tt.args...)
		var stdout, stderr bytes.Buffer
		if code := run(t.Context(), args, &stdout, &stderr, env(nil)); code != 1 || !strings.Contains(stderr.String(), tt.want) {
			t.Errorf("%q: exit %d, stderr %q; want 1, %q", args, code, stderr.String(), tt.want)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("%q: %s created by a refused run (%v)", args, dir, err)
		}
	}
}

func TestGenCertHostNames(t *testing.T) {
	dir := genCert(t, "--host", "*.db.example", "--host", "LOCALHOST,Node_1.internal,[2001:db8::1],127.0.0.1")
	srv := readCert(t, filepath.Join(dir, "server.pem"))
	var ips []string
	for _, ip := range srv.IPAddresses {
		ips = append(ips, ip.String())
	}
	if !slices.Equal(srv.DNSNames, []string{"localhost", "*.db.example", "Node_1.internal"}) ||
		!slices.Equal(ips, []string{"127.0.0.1", "::1", "2001:db8::1"}) || srv.Subject.CommonName != "*.db.example" {
		t.Errorf("DNS %v IPs %v CN %q", srv.DNSNames, ips, srv.Subject.CommonName)
	}
	if err := srv.VerifyHostname("a.db.example"); err != nil {
		t.Error(err)
	}
}

// genCertIn runs gen-cert with --out dir and args, fails the test unless
// it exits 0, and returns its output.
func genCertIn(t *testing.T, dir string, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	args = append([]string{"gen-cert", "--out", dir}, args...)
	if code := run(t.Context(), args, &stdout, &stderr, env(nil)); code != 0 {
		t.Fatalf("%q: exit %d: %s", args, code, stderr.String())
	}
	return stdout.String()
}

// verifyClient reports whether the client certificate in file chains to
// the CA now in dir/ca.pem for client authentication.
func verifyClient(t *testing.T, dir string, cert *x509.Certificate) error {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(readCert(t, filepath.Join(dir, "ca.pem")))
	_, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	return err
}

// Re-running keeps the CA, so a client certificate of the first run stays
// valid; --new-ca replaces the CA and everything it signed.
func TestGenCertKeepsCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	genCertIn(t, dir)
	ca1, _ := os.ReadFile(filepath.Join(dir, "ca.pem"))
	caKey1, _ := os.ReadFile(filepath.Join(dir, "ca-key.pem"))
	client1 := readCert(t, filepath.Join(dir, "client.pem"))

	out := genCertIn(t, dir, "--force", "--host", "db.example", "--client-name", "worker-2")
	if !strings.Contains(out, "kept "+filepath.Join(dir, "ca.pem")) || strings.Count(out, "wrote ") != 4 || strings.Contains(out, "wrote "+filepath.Join(dir, "ca")) {
		t.Errorf("second run output %q; want the CA kept and four files written", out)
	}
	ca2, _ := os.ReadFile(filepath.Join(dir, "ca.pem"))
	caKey2, _ := os.ReadFile(filepath.Join(dir, "ca-key.pem"))
	if !bytes.Equal(ca1, ca2) || !bytes.Equal(caKey1, caKey2) {
		t.Fatal("the CA changed on a re-run without --new-ca")
	}
	if err := verifyClient(t, dir, client1); err != nil {
		t.Errorf("client certificate of run 1 after run 2: %v", err)
	}
	client2 := readCert(t, filepath.Join(dir, "client.pem"))
	if err := verifyClient(t, dir, client2); err != nil || client2.Subject.CommonName != "worker-2" {
		t.Errorf("client certificate of run 2: CN %q, %v", client2.Subject.CommonName, err)
	}
	srv := readCert(t, filepath.Join(dir, "server.pem"))
	if srv.CheckSignatureFrom(readCert(t, filepath.Join(dir, "ca.pem"))) != nil || srv.VerifyHostname("db.example") != nil || srv.VerifyHostname("localhost") != nil {
		t.Error("re-issued server certificate not signed by the kept CA for localhost and db.example")
	}
	if srv.NotAfter.After(readCert(t, filepath.Join(dir, "ca.pem")).NotAfter) {
		t.Error("server certificate outlives its CA")
	}

	// Without --force, a re-run still refuses; deleting the server and
	// client files and re-running keeps the CA too.
	var stdout, stderr bytes.Buffer
	if code := run(t.Context(), []string{"gen-cert", "--out", dir}, &stdout, &stderr, env(nil)); code != 1 || !strings.Contains(stderr.String(), "the CA is kept") {
		t.Errorf("re-run without --force: exit %d, stderr %q", code, stderr.String())
	}
	for _, f := range []string{"server.pem", "server-key.pem", "client.pem", "client-key.pem"} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	genCertIn(t, dir)
	if err := verifyClient(t, dir, client1); err != nil {
		t.Errorf("after re-issuing into the same directory: %v", err)
	}

	// --new-ca (no --force needed) replaces the CA: run 1's client
	// certificate no longer chains to it, the new one does.
	out = genCertIn(t, dir, "--new-ca")
	if strings.Count(out, "wrote ") != 6 || strings.Contains(out, "kept ") {
		t.Errorf("--new-ca output %q", out)
	}
	if ca3, _ := os.ReadFile(filepath.Join(dir, "ca.pem")); bytes.Equal(ca1, ca3) {
		t.Fatal("--new-ca kept the CA")
	}
	if err := verifyClient(t, dir, client1); err == nil {
		t.Error("run 1's client certificate still verifies against the new CA")
	}
	if err := verifyClient(t, dir, readCert(t, filepath.Join(dir, "client.pem"))); err != nil {
		t.Errorf("client certificate of the new CA: %v", err)
	}
}

// A CA that cannot be used is never silently replaced.
func TestGenCertBrokenCA(t *testing.T) {
	other := filepath.Join(t.TempDir(), "other")
	genCertIn(t, other)
	for _, tt := range []struct {
		name    string
		breakCA func(dir string) error
		want    string
	}{
		{"key missing", func(dir string) error { return os.Remove(filepath.Join(dir, "ca-key.pem")) }, "ca-key.pem does not"},
		{"cert missing", func(dir string) error { return os.Remove(filepath.Join(dir, "ca.pem")) }, "ca.pem does not"},
		{"pair mismatch", func(dir string) error {
			b, err := os.ReadFile(filepath.Join(other, "ca-key.pem"))
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(dir, "ca-key.pem"), b, 0o600)
		}, "existing CA"},
		{"not a CA", func(dir string) error {
			for _, f := range [][2]string{{"server.pem", "ca.pem"}, {"server-key.pem", "ca-key.pem"}} {
				if err := os.Rename(filepath.Join(dir, f[0]), filepath.Join(dir, f[1])); err != nil {
					return err
				}
			}
			return nil
		}, "is not a CA certificate"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "certs")
			genCertIn(t, dir)
			if err := tt.breakCA(dir); err != nil {
				t.Fatal(err)
			}
			var stdout, stderr bytes.Buffer
			if code := run(t.Context(), []string{"gen-cert", "--out", dir, "--force"}, &stdout, &stderr, env(nil)); code != 1 ||
				!strings.Contains(stderr.String(), tt.want) || !strings.Contains(stderr.String(), "--new-ca") {
				t.Errorf("exit %d, stderr %q; want 1, %q and --new-ca", code, stderr.String(), tt.want)
			}
			genCertIn(t, dir, "--new-ca")
		})
	}
}

// --out defaults to ./certs.
func TestGenCertDefaultOut(t *testing.T) {
	t.Chdir(t.TempDir())
	var stdout, stderr bytes.Buffer
	if code := run(t.Context(), []string{"gen-cert"}, &stdout, &stderr, env(nil)); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	for _, f := range []string{"ca.pem", "ca-key.pem", "server.pem", "server-key.pem", "client.pem", "client-key.pem"} {
		if _, err := os.Stat(filepath.Join("certs", f)); err != nil {
			t.Error(err)
		}
	}
}

// The repository ignores the default output directory.
func TestGitignoreListsCerts(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", ".gitignore"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(strings.Split(string(b), "\n"), "certs/") {
		t.Errorf(".gitignore does not list certs/:\n%s", b)
	}
}

// gen-cert --node writes certificates that open mutual-TLS raft links
// between nodes of the same CA.
func TestGenCertNodeCertificates(t *testing.T) {
	dir := t.TempDir()
	c := &GenCertCmd{Out: dir, ClientName: defaultClientName, Node: []string{"n1,n2"}}
	if err := c.run(io.Discard); err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile(filepath.Join(dir, caCertFile))
	if err != nil {
		t.Fatal(err)
	}
	cfg := func(id string) *tls.Config {
		cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "node-"+id+".pem"), filepath.Join(dir, "node-"+id+"-key.pem"))
		if err != nil {
			t.Fatal(err)
		}
		tc, err := cluster.MutualTLS(cert, ca)
		if err != nil {
			t.Fatal(err)
		}
		return tc
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	errs := make(chan error, 1)
	go func() { errs <- tls.Server(b, cfg("n2")).Handshake() }()
	if err := tls.Client(a, cfg("n1")).Handshake(); err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	if err := <-errs; err != nil {
		t.Fatalf("server handshake: %v", err)
	}
	if _, err := checkNodes([]string{"bad/id"}); err == nil {
		t.Fatal("a node id with a slash was accepted")
	}
}
