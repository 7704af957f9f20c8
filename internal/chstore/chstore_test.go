package chstore

import (
	"reflect"
	"strings"
	"testing"
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
	for _, c := range []Config{{Addr: nil, Database: "x"}, {Addr: []string{"host"}, Database: "x"}, {Addr: []string{"h:1"}, Database: "a-b"}, {Addr: []string{"h:1"}, Database: "x; DROP"}} {
		if err := c.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil, want an error", c)
		}
	}
}
