package chserver

import (
	"os"
	"strings"
	"testing"
)

func TestEffectiveCap(t *testing.T) {
	status := func(capEff string) []byte {
		return []byte("Name:\tclickhouse\nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\nCapEff:\t" + capEff + "\nCapBnd:\t000001ffffffffff\n")
	}
	for _, tc := range []struct {
		capEff string
		want   bool
	}{
		{"000001fffeffffff", true},  // root in this sandbox: CAP_SYS_RESOURCE (24) dropped, CAP_SYS_NICE kept
		{"00000000a80425fb", false}, // Docker's default set: no CAP_SYS_NICE
		{"0000000000800000", true},  // CAP_SYS_NICE alone
		{"0000000000000000", false}, // an unprivileged user
	} {
		got, err := effectiveCap(status(tc.capEff), capSysNice)
		if err != nil || got != tc.want {
			t.Errorf("CapEff %s: got %v, %v; want %v", tc.capEff, got, err, tc.want)
		}
	}
	if _, err := effectiveCap(status("zz"), capSysNice); err == nil || !strings.Contains(err.Error(), `"zz"`) {
		t.Errorf("a malformed CapEff: err = %v, want one naming the value", err)
	}
	if _, err := effectiveCap([]byte("Name:\tx\n"), capSysNice); err == nil || !strings.Contains(err.Error(), "no CapEff") {
		t.Errorf("no CapEff line: err = %v", err)
	}
}

// The check reads the live /proc: a process of ours answers, one that does
// not exist is an error naming its pid.
func TestMergesBelowInsertsReadsProc(t *testing.T) {
	if _, err := MergesBelowInserts(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	if _, err := MergesBelowInserts(1 << 30); err == nil || !strings.Contains(err.Error(), "1073741824") {
		t.Fatalf("a pid that does not exist: err = %v", err)
	}
}
