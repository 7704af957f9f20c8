package chstore_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentrail/agentrail/internal/chstore"
	"github.com/agentrail/agentrail/internal/testenv"
)

// TestTLSWithPasswordFromEnv connects to a real ClickHouse over TLS,
// verifying the server against a private CA, as the pipeline's writer with
// its password from the environment; a client trusting another CA, or
// expecting another server name, is refused, and no error shows the
// password. The embedded engine (clickhouse-local) serves only plain TCP and
// HTTP, so a TLS terminator on loopback stands in front of it here, as a
// load balancer or the server's own tcp_port_secure would in production.
func TestTLSWithPasswordFromEnv(t *testing.T) {
	dir := t.TempDir()
	caFile, certFile, keyFile := writeCerts(t, dir, "clickhouse.agentrail.test")
	otherCA, _, _ := writeCerts(t, filepath.Join(dir, "other"), "clickhouse.agentrail.test")
	srv := testenv.StartClickHouseWithUsers(t, "../../deployments/clickhouse/users.xml")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tlsAddr := terminateTLS(t, certFile, keyFile, srv.Addr())

	t.Setenv("TEST_WRITER_PASSWORD", "writer-dev-password")
	cfg := chstore.Config{Addr: []string{tlsAddr}, Database: "agentrail",
		Username: "agentrail_writer", PasswordEnv: "TEST_WRITER_PASSWORD",
		TLS: &chstore.TLS{CAFile: caFile, ServerName: "clickhouse.agentrail.test"}}
	cfg.Defaults()
	conn, err := chstore.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("TLS connection with the right CA: %v", err)
	}
	var user string
	if err := conn.QueryRow(ctx, "SELECT currentUser()").Scan(&user); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if user != "agentrail_writer" {
		t.Fatalf("connected as %q", user)
	}
	// The native (ch-go) connection of the events insert, from the same
	// settings.
	nopts, err := chstore.NativeOptions(cfg)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := chstore.DialNative(ctx, nopts)
	if err != nil {
		t.Fatalf("native TLS connection with the right CA: %v", err)
	}
	if err := nc.Ping(ctx); err != nil {
		t.Fatalf("native ping: %v", err)
	}
	nc.Close()

	for name, bad := range map[string]*chstore.TLS{
		"another CA":          {CAFile: otherCA, ServerName: "clickhouse.agentrail.test"},
		"another server name": {CAFile: caFile, ServerName: "evil.agentrail.test"},
	} {
		c := cfg
		c.TLS = bad
		conn, err := chstore.Open(ctx, c)
		if err == nil {
			conn.Close()
			t.Fatalf("%s: connected", name)
		}
		nopts, oerr := chstore.NativeOptions(c)
		if oerr != nil {
			t.Fatal(oerr)
		}
		nc, nerr := chstore.DialNative(ctx, nopts)
		if nerr == nil {
			nc.Close()
			t.Fatalf("%s: native client connected", name)
		}
		for _, err := range []error{err, nerr} {
			if !strings.Contains(err.Error(), "certificate") {
				t.Fatalf("%s: err = %v, want a certificate error", name, err)
			}
			if strings.Contains(err.Error(), "writer-dev-password") {
				t.Fatalf("%s: the error shows the password: %v", name, err)
			}
		}
	}
}

// terminateTLS serves TLS on a loopback port with the given certificate and
// forwards each connection's plaintext to backend; it returns the address.
func terminateTLS(t *testing.T, certFile, keyFile, backend string) string {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				b, err := net.Dial("tcp", backend)
				if err != nil {
					return
				}
				defer b.Close()
				go func() { _, _ = io.Copy(b, c); b.Close() }()
				_, _ = io.Copy(c, b)
			}()
		}
	}()
	return l.Addr().String()
}

// writeCerts writes a new CA and a server certificate for name signed by
// it, as PEM files in dir, and returns their paths.
func writeCerts(t *testing.T, dir, name string) (ca, cert, key string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey, srvKey := newKey(), newKey()
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "agentrail test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	srvTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("server.pem", "CERTIFICATE", srvDER), write("server.key", "PRIVATE KEY", keyDER)
}
