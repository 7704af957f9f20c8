package reports

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A team name that came from events, not the registry, names a file inside
// the output directory and nowhere else, however it is spelled.
func TestWriteFilesTeamFromEvents(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "a", "b", "out")
	for _, team := range []string{"x/../../../p", "../../x", `a"b`, ".hidden", "Finance", "ü/..", ""} {
		r := &Weekly{Team: team, Week: "2026-W47"}
		for _, d := range w47.Days(berlin) {
			r.Daily = append(r.Daily, DailyRow{Date: d.Format("2006-01-02"), Tier: 1, Actions: 3})
		}
		paths, err := WriteFiles(r, dir)
		if err != nil {
			t.Fatalf("team %q: %v", team, err)
		}
		if len(paths) != 4 {
			t.Fatalf("team %q: paths %v", team, paths)
		}
		for _, p := range paths {
			if filepath.Dir(p) != dir || strings.ContainsAny(filepath.Base(p), `"/\`) || strings.HasPrefix(filepath.Base(p), ".") {
				t.Errorf("team %q: wrote %s, outside %s or with an unsafe name", team, p, dir)
			}
		}
	}
	// Nothing anywhere but the files in dir: 7 teams, 4 files each.
	var files []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if filepath.Dir(f) != dir {
			t.Errorf("file outside %s: %s", dir, f)
		}
	}
	if len(files) != 7*4 {
		t.Errorf("%d files written, want 28 (distinct teams must not share files): %v", len(files), files)
	}
}
