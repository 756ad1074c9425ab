package vm

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// fakeTemplate makes a template directory whose state was last used at.
func fakeTemplate(t *testing.T, dir, name string, at time.Time) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(p, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{templateMemory, templateState, templateHello} {
		if err := os.WriteFile(filepath.Join(p, f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.Chtimes(filepath.Join(p, templateState), at, at)
	return p
}

func TestRemoveStaleTemplates(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	fresh := []string{
		fakeTemplate(t, dir, "a", now.Add(-time.Minute)),
		fakeTemplate(t, dir, "b", now.Add(-time.Hour)),
		fakeTemplate(t, dir, "c", now.Add(-2*time.Hour)),
	}
	stale := fakeTemplate(t, dir, "d", now.Add(-30*24*time.Hour))
	leftover := filepath.Join(dir, "e.tmp-123")
	os.MkdirAll(leftover, 0o700)
	old := now.Add(-30 * 24 * time.Hour)
	os.Chtimes(leftover, old, old)
	liveTmp := filepath.Join(dir, "f.tmp-456") // another pyro's work in progress
	os.MkdirAll(liveTmp, 0o700)
	oldFailure := filepath.Join(dir, "h"+templateFailed)
	os.WriteFile(oldFailure, []byte("long ago\n"), 0o644)
	os.Chtimes(oldFailure, old, old)
	oldLock := filepath.Join(dir, "g.lock") // may be held: never removed
	os.WriteFile(oldLock, nil, 0o600)
	os.Chtimes(oldLock, old, old)

	removeStaleTemplates(dir, now.Add(-staleTemplate), 2)
	for _, p := range []string{stale, leftover, fresh[2], oldFailure} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s survived", filepath.Base(p))
		}
	}
	for _, p := range []string{fresh[0], fresh[1], liveTmp, oldLock} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s was removed", filepath.Base(p))
		}
	}
	// Nothing is left half-removed under another name.
	entries, _ := os.ReadDir(dir)
	if len(entries) != 4 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("left %q, want the two fresh templates, the live work and the lock", names)
	}
}

func TestTemplatesSummary(t *testing.T) {
	cache := t.TempDir()
	dir := filepath.Join(cache, "boot", "templates")
	fakeTemplate(t, dir, "a", time.Now())
	fakeTemplate(t, dir, "b", time.Now())
	os.MkdirAll(filepath.Join(dir, "c.tmp-1"), 0o700)
	os.WriteFile(filepath.Join(dir, "d"+templateFailed), []byte("QMP migrate: no\n"), 0o644)
	expired := filepath.Join(dir, "e"+templateFailed)
	os.WriteFile(expired, []byte("long ago\n"), 0o644)
	old := time.Now().Add(-2 * failedTemplateTTL)
	os.Chtimes(expired, old, old)

	s := Templates(cache)
	if s.Count != 2 || s.Bytes <= 0 {
		t.Errorf("count %d bytes %d, want 2 templates taking some space", s.Count, s.Bytes)
	}
	if len(s.Failures) != 1 || s.Failures[0] != "QMP migrate: no" {
		t.Errorf("failures %q, want the recent one only", s.Failures)
	}
	if s := Templates(t.TempDir()); s.Count != 0 || len(s.Failures) != 0 {
		t.Errorf("an empty cache: %+v", s)
	}
}
