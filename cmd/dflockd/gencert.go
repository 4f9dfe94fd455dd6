package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
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
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
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

// defaultClientName is the subject of the client certificate unless
// --client-name says otherwise; with --tls-client-ca the server knows its
// holder as "cert:dflockd-client".
const defaultClientName = "dflockd-client"

// defaultHosts are the names every server certificate is valid for;
// --host adds to them.
var defaultHosts = []string{"localhost", "127.0.0.1", "::1"}

// maxCommonName is the longest common name X.509 allows (ub-common-name).
const maxCommonName = 64

// GenCertCmd writes a private CA, a server certificate and a client
// certificate signed by it: enough for TLS, mutual TLS and QUIC. An
// existing CA in the output directory is kept (and signs the new
// certificates) unless --new-ca is given.
type GenCertCmd struct {
	Host       []string `name:"host" sep:"none" placeholder:"NAME" help:"Another DNS name or IP address the server certificate is valid for, besides localhost, 127.0.0.1 and ::1; repeatable or comma-separated."`
	Out        string   `name:"out" default:"certs" placeholder:"DIR" help:"Directory to write ca.pem, ca-key.pem, server.pem, server-key.pem, client.pem and client-key.pem to (created if missing; default ${default})."`
	ClientName string   `name:"client-name" default:"dflockd-client" placeholder:"NAME" help:"Common name of the client certificate; with --tls-client-ca the server knows the client as cert:NAME (default ${default})."`
	Force      bool     `name:"force" help:"Overwrite existing server and client certificates (the CA is still kept)."`
	Node       []string `name:"node" placeholder:"ID" help:"Also write node-ID.pem and node-ID-key.pem: a certificate for the raft links of cluster node ID (--raft-tls-cert/--raft-tls-key, with ca.pem as --raft-tls-ca), usable both ways; repeatable or comma-separated."`
	NewCA      bool     `name:"new-ca" help:"Make a new CA even if the directory has one, and re-issue everything (implies --force). Certificates the old CA signed stop being accepted once the server trusts the new one."`
}

// Help implements kong.HelpProvider: the detail of gen-cert --help.
func (c *GenCertCmd) Help() string {
	return `Writes into --out (default certs/): ca.pem and ca-key.pem, a private CA; server.pem and server-key.pem for --tls-cert/--tls-key; client.pem and client-key.pem for clients of a server started with --tls-client-ca ca.pem. Keys are ECDSA P-256, written with mode 0600.

The server certificate is valid for localhost, 127.0.0.1 and ::1, plus every --host name.

Running it again keeps the CA found in --out (ca.pem with ca-key.pem) and signs the new certificates with it, so client certificates issued earlier stay valid. Existing server and client files are never overwritten without --force, and a refused run writes nothing: use "gen-cert --force --host NEW-NAME" to re-issue the server and client certificates for another name. --new-ca replaces the CA and everything it signed.`
}

// pemFile is one file gen-cert writes.
type pemFile struct {
	name string
	mode fs.FileMode
	data []byte
}

// issuer is the CA that signs the server and client certificates.
type issuer struct {
	cert *x509.Certificate
	key  crypto.Signer
	kept bool // loaded from --out rather than made by this run
}

// run generates the certificates and writes them to c.Out, listing the
// files on w. It keeps an existing CA unless --new-ca; without --force (or
// --new-ca) it writes nothing if a server or client file exists.
func (c *GenCertCmd) run(w io.Writer) error {
	hosts, err := c.hosts()
	if err != nil {
		return err
	}
	clientName, err := checkClientName(c.ClientName)
	if err != nil {
		return err
	}
	now := time.Now()
	ca, err := c.loadCA(now)
	if err != nil {
		return err
	}
	var files []pemFile
	if ca == nil {
		ca, files, err = newCA(now)
		if err != nil {
			return err
		}
	}
	leaves, err := issueLeaves(ca, hosts, clientName, now)
	if err != nil {
		return err
	}
	nodes, err := checkNodes(c.Node)
	if err != nil {
		return err
	}
	for _, id := range nodes {
		pair, err := issueNode(ca, id, hosts, now)
		if err != nil {
			return err
		}
		leaves = append(leaves, pair...)
	}
	files = append(files, leaves...)
	if err := os.MkdirAll(c.Out, 0o755); err != nil {
		return fmt.Errorf("create output directory: %w", err)
	}
	overwrite := c.Force || c.NewCA
	if !overwrite {
		for _, f := range leaves {
			p := filepath.Join(c.Out, f.name)
			if _, err := os.Lstat(p); err == nil {
				return fmt.Errorf("%s exists (use --force to overwrite the server and client certificates; the CA is kept)", p)
			}
		}
	}
	if ca.kept {
		fmt.Fprintf(w, "kept %s (the existing CA, valid until %s; certificates it signed stay valid)\n",
			filepath.Join(c.Out, caCertFile), ca.cert.NotAfter.UTC().Format(time.DateOnly))
	}
	for _, f := range files {
		p := filepath.Join(c.Out, f.name)
		if err := writeFile(p, f.data, f.mode, overwrite); err != nil {
			return err
		}
		fmt.Fprintln(w, "wrote", p)
	}
	fmt.Fprintf(w, "server certificate for %s; client certificate for %q\n", strings.Join(hosts, ", "), clientName)
	return nil
}

// hosts returns the names of the server certificate: the defaults, then
// every --host name, each once. Names are validated.
func (c *GenCertCmd) hosts() ([]string, error) {
	hosts := slices.Clone(defaultHosts)
	// The list is split here, not by kong, so that an empty value
	// (--host "") is refused rather than read as no names at all.
	for _, v := range c.Host {
		for h := range strings.SplitSeq(v, ",") {
			name, err := checkHost(h)
			if err != nil {
				return nil, fmt.Errorf("--host: %w", err)
			}
			if !slices.ContainsFunc(hosts, func(x string) bool { return sameHost(x, name) }) {
				hosts = append(hosts, name)
			}
		}
	}
	return hosts, nil
}

// sameHost reports whether two valid names are the same: IP addresses by
// value, DNS names without regard to case.
func sameHost(a, b string) bool {
	ipA, ipB := net.ParseIP(a), net.ParseIP(b)
	if ipA != nil || ipB != nil {
		return ipA.Equal(ipB)
	}
	return strings.EqualFold(a, b)
}

// checkHost validates one --host name: an IPv4 or IPv6 address (brackets
// allowed) or a DNS name, optionally with a leading "*." wildcard. It
// returns the name as it goes into the certificate.
func checkHost(raw string) (string, error) {
	h := strings.TrimSpace(raw)
	if len(h) >= 2 && h[0] == '[' && h[len(h)-1] == ']' {
		h = h[1 : len(h)-1] // [::1]
	}
	if h == "" {
		return "", errors.New("empty name")
	}
	if ip := net.ParseIP(h); ip != nil {
		return ip.String(), nil
	}
	bad := func(why string) error {
		return fmt.Errorf("%q is not a DNS name or IP address: %s", raw, why)
	}
	if strings.Contains(h, "://") || strings.Contains(h, ":") {
		return "", bad("give a bare name, without a scheme or port")
	}
	if len(h) > 253 {
		return "", bad("longer than 253 characters")
	}
	for i, label := range strings.Split(h, ".") {
		if i == 0 && label == "*" && strings.Contains(h, ".") {
			continue
		}
		switch {
		case label == "":
			return "", bad("empty label")
		case len(label) > 63:
			return "", bad("a label is longer than 63 characters")
		case label[0] == '-' || label[len(label)-1] == '-':
			return "", bad("a label starts or ends with '-'")
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return "", bad(fmt.Sprintf("%q is not allowed (letters, digits, '-' and '_' are)", r))
			}
		}
	}
	return h, nil
}

// checkClientName validates --client-name: 1 to 64 bytes, no control
// characters, trimmed.
func checkClientName(raw string) (string, error) {
	name := strings.TrimSpace(raw)
	switch {
	case name == "":
		return "", errors.New("--client-name: empty name")
	case len(name) > maxCommonName:
		return "", fmt.Errorf("--client-name: %q is longer than %d bytes", name, maxCommonName)
	case !utf8.ValidString(name) || strings.ContainsFunc(name, unicode.IsControl):
		return "", fmt.Errorf("--client-name: %q holds a control character or invalid UTF-8", name)
	}
	return name, nil
}

// loadCA returns the CA kept in c.Out, or nil if there is none or --new-ca
// asks for a new one. Half a CA (a certificate without its key or the
// reverse), a pair that does not match, a certificate that is not a CA or
// one that has expired is an error: gen-cert never silently replaces a CA.
func (c *GenCertCmd) loadCA(now time.Time) (*issuer, error) {
	if c.NewCA {
		return nil, nil
	}
	certPath, keyPath := filepath.Join(c.Out, caCertFile), filepath.Join(c.Out, caKeyFile)
	_, certErr := os.Lstat(certPath)
	_, keyErr := os.Lstat(keyPath)
	switch {
	case errors.Is(certErr, fs.ErrNotExist) && errors.Is(keyErr, fs.ErrNotExist):
		return nil, nil
	case errors.Is(keyErr, fs.ErrNotExist):
		return nil, fmt.Errorf("%s exists but %s does not: restore the key, or use --new-ca to replace the CA", certPath, keyPath)
	case errors.Is(certErr, fs.ErrNotExist):
		return nil, fmt.Errorf("%s exists but %s does not: restore the certificate, or use --new-ca to replace the CA", keyPath, certPath)
	}
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return nil, fmt.Errorf("existing CA %s: %w (use --new-ca to replace it)", certPath, err)
	}
	cert := pair.Leaf
	if cert == nil {
		if cert, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, fmt.Errorf("existing CA %s: %w", certPath, err)
		}
	}
	key, ok := pair.PrivateKey.(crypto.Signer)
	switch {
	case !ok:
		return nil, fmt.Errorf("existing CA %s: key of type %T cannot sign", keyPath, pair.PrivateKey)
	case !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0:
		return nil, fmt.Errorf("existing %s is not a CA certificate (use --new-ca to replace it)", certPath)
	case !now.Before(cert.NotAfter):
		return nil, fmt.Errorf("existing CA %s expired on %s (use --new-ca to replace it)", certPath, cert.NotAfter.UTC().Format(time.DateOnly))
	}
	return &issuer{cert: cert, key: key, kept: true}, nil
}

// newCA makes a CA valid from an hour before now and returns it with its
// two files.
func newCA(now time.Time) (*issuer, []pemFile, error) {
	key, err := newKey()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "dflockd CA", Organization: []string{"dflockd"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, cert, err := sign(tmpl, nil, key, key)
	if err != nil {
		return nil, nil, fmt.Errorf("CA certificate: %w", err)
	}
	files, err := pemPair(caCertFile, caKeyFile, der, key)
	if err != nil {
		return nil, nil, err
	}
	return &issuer{cert: cert, key: key}, files, nil
}

// issueLeaves makes the server certificate for hosts and the client
// certificate named clientName, signed by ca, valid from an hour before
// now until leafValidity later or the CA's end, whichever comes first.
func issueLeaves(ca *issuer, hosts []string, clientName string, now time.Time) ([]pemFile, error) {
	notAfter := now.Add(leafValidity)
	if ca.cert.NotAfter.Before(notAfter) {
		notAfter = ca.cert.NotAfter
	}
	serverTmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: serverCommonName(hosts), Organization: []string{"dflockd"}},
		NotBefore:   now.Add(-time.Hour),
		NotAfter:    notAfter,
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
	clientTmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: clientName, Organization: []string{"dflockd"}},
		NotBefore:   now.Add(-time.Hour),
		NotAfter:    notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	var files []pemFile
	for _, leaf := range []struct {
		what, cert, key string
		tmpl            *x509.Certificate
	}{
		{"server certificate", serverCertFile, serverKeyFile, serverTmpl},
		{"client certificate", clientCertFile, clientKeyFile, clientTmpl},
	} {
		key, err := newKey()
		if err != nil {
			return nil, err
		}
		der, _, err := sign(leaf.tmpl, ca.cert, key, ca.key)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", leaf.what, err)
		}
		pair, err := pemPair(leaf.cert, leaf.key, der, key)
		if err != nil {
			return nil, err
		}
		files = append(files, pair...)
	}
	return files, nil
}

// checkNodes validates the --node ids: each a name usable in a file name
// (letters, digits, '-', '_', '.'), 1 to 64 bytes, once.
func checkNodes(raw []string) ([]string, error) {
	var out []string
	for _, v := range raw {
		for id := range strings.SplitSeq(v, ",") {
			id = strings.TrimSpace(id)
			ok := id != "" && len(id) <= maxCommonName && id[0] != '.'
			for _, r := range id {
				ok = ok && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
			}
			if !ok {
				return nil, fmt.Errorf("--node: %q is not a node id (1 to 64 letters, digits, '-', '_' or '.')", id)
			}
			if !slices.Contains(out, id) {
				out = append(out, id)
			}
		}
	}
	return out, nil
}

// issueNode makes the raft-link certificate of node id: its common name
// is the id, it names the same hosts as the server certificate, and it
// serves both ends of a mutual-TLS link.
func issueNode(ca *issuer, id string, hosts []string, now time.Time) ([]pemFile, error) {
	notAfter := now.Add(leafValidity)
	if ca.cert.NotAfter.Before(notAfter) {
		notAfter = ca.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: id, Organization: []string{"dflockd cluster"}},
		NotBefore:   now.Add(-time.Hour),
		NotAfter:    notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	key, err := newKey()
	if err != nil {
		return nil, err
	}
	der, _, err := sign(tmpl, ca.cert, key, ca.key)
	if err != nil {
		return nil, fmt.Errorf("node certificate %s: %w", id, err)
	}
	return pemPair("node-"+id+".pem", "node-"+id+"-key.pem", der, key)
}

// serverCommonName is the subject of the server certificate: the first
// name asked for with --host, else the first default. (Clients check the
// alternative names; the common name is for people reading it.)
func serverCommonName(hosts []string) string {
	if len(hosts) > len(defaultHosts) {
		return hosts[len(defaultHosts)]
	}
	return hosts[0]
}

// pemPair encodes a certificate and its key as the two files named.
func pemPair(certName, keyName string, der []byte, key *ecdsa.PrivateKey) ([]pemFile, error) {
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return []pemFile{
		{certName, 0o644, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})},
		{keyName, 0o600, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})},
	}, nil
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
