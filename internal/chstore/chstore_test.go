package chstore

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/ClickHouse/ch-go"
)

func TestSplitStatements(t *testing.T) {
	got := splitStatements("-- comment\nCREATE TABLE a (x String); \n\n-- another\nCREATE VIEW b AS\nSELECT 1;\nSELECT 2")
	want := []string{"CREATE TABLE a (x String)", "CREATE VIEW b AS\nSELECT 1", "SELECT 2"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestMigrationsAreOrderedAndSubstituted(t *testing.T) {
	ms, err := Migrations("mydb")
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 || ms[0].Version != 1 {
		t.Fatalf("migrations = %+v, want version 1 first", ms)
	}
	for i, m := range ms {
		if i > 0 && m.Version <= ms[i-1].Version {
			t.Fatalf("migration %s out of order", m.Name)
		}
		for _, s := range m.Statements {
			if strings.Contains(s, "{db}") {
				t.Fatalf("%s: {db} not substituted", m.Name)
			}
		}
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []Config{{Addr: nil, Database: "x"}, {Addr: []string{"host"}, Database: "x"}, {Addr: []string{"h:1"}, Database: "a-b"}, {Addr: []string{"h:1"}, Database: "x; DROP"}, {Addr: []string{"h:1"}, Database: "x", Compression: "gzip"}} {
		if err := c.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil, want an error", c)
		}
	}
}

func TestCompression(t *testing.T) {
	cases := []struct {
		name, setting string
		addr          []string
		want          string // "" for none
	}{
		{"auto, loopback v4", "auto", []string{"127.0.0.1:9000"}, ""},
		{"auto, loopback v6 and localhost", "auto", []string{"[::1]:9000", "localhost:9000"}, ""},
		{"auto, one remote address", "auto", []string{"127.0.0.1:9000", "ch.internal:9000"}, "lz4"},
		{"auto, remote IP", "auto", []string{"10.0.0.7:9000"}, "lz4"},
		{"lz4 on loopback", "lz4", []string{"127.0.0.1:9000"}, "lz4"},
		{"zstd", "zstd", []string{"10.0.0.7:9000"}, "zstd"},
		{"none remote", "none", []string{"10.0.0.7:9000"}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := Config{Addr: tc.addr, Compression: tc.setting}
			got := ""
			if m := compression(c); m != nil {
				got = m.Method.String()
			}
			if got != tc.want {
				t.Fatalf("compression(%v, %q) = %q, want %q", tc.addr, tc.setting, got, tc.want)
			}
			// The native client of the events insert compresses alike.
			opts, err := NativeOptions(c)
			if err != nil {
				t.Fatal(err)
			}
			wantNative := map[string]ch.Compression{"": ch.CompressionDisabled, "lz4": ch.CompressionLZ4, "zstd": ch.CompressionZSTD}[tc.want]
			for i, o := range opts {
				if o.Compression != wantNative || o.Address != tc.addr[i] {
					t.Fatalf("NativeOptions(%v, %q)[%d] = %s at %s, want %s at %s", tc.addr, tc.setting, i, o.Compression, o.Address, wantNative, tc.addr[i])
				}
			}
		})
	}
}

// TestNativeOptionsLogin checks that the native client gets the login Open
// uses, and that a password source that cannot be read fails with its name.
func TestNativeOptionsLogin(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TEST_CHSTORE_PW", "from-env")
	for _, tc := range []struct {
		name    string
		cfg     Config
		want    string // password, or the error's text
		wantErr bool
	}{
		{"file", Config{Addr: []string{"h:1"}, Username: "w", PasswordFile: pw}, "from-file", false},
		{"env", Config{Addr: []string{"h:1"}, Username: "w", PasswordEnv: "TEST_CHSTORE_PW"}, "from-env", false},
		{"missing file", Config{Addr: []string{"h:1"}, PasswordFile: pw + ".none"}, "clickhouse.password_file", true},
		{"unset env", Config{Addr: []string{"h:1"}, PasswordEnv: "TEST_CHSTORE_UNSET"}, "TEST_CHSTORE_UNSET is not set", true},
		{"missing CA", Config{Addr: []string{"h:1"}, TLS: &TLS{CAFile: pw + ".ca"}}, "clickhouse.tls.ca_file", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts, err := NativeOptions(tc.cfg)
			if tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("err = %v, want one naming %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o := opts[0]; o.Password != tc.want || o.User != tc.cfg.Username || o.Database != "default" {
				t.Fatalf("options = user %q password %q database %q", o.User, o.Password, o.Database)
			}
		})
	}
}
