package supervisor

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/pyro-sandbox/pyro/internal/env"
)

func TestGuestInit(t *testing.T) {
	dir := t.TempDir()
	cache := &env.Cache{Dir: filepath.Join(dir, "cache")}
	self := filepath.Join(dir, "pyro")
	other := filepath.Join(dir, "other-pyro")
	link := filepath.Join(dir, "pyro-link")
	for _, p := range []string{self, other} {
		if err := os.WriteFile(p, []byte(p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(self, link); err != nil {
		t.Fatal(err)
	}
	build := []byte("the guest build")

	for _, tc := range []struct {
		name, agent, self string
		bin               []byte
		wantBuild         bool
	}{
		{"the client named this pyro", self, self, build, true},
		{"by another path to the same file", link, self, build, true},
		{"another pyro binary", other, self, build, false},
		{"no embedded build", self, self, nil, false},
		{"the agent is missing", filepath.Join(dir, "gone"), self, build, false},
		{"no own path", self, "", build, false},
	} {
		got := guestInit(cache, tc.agent, tc.self, tc.bin)
		if !tc.wantBuild {
			if got != tc.agent {
				t.Errorf("%s: guestInit = %s, want the agent %s", tc.name, got, tc.agent)
			}
			continue
		}
		if !cache.IsGuestBuild(got) {
			t.Errorf("%s: guestInit = %s, want the guest build in the cache", tc.name, got)
			continue
		}
		if b, err := os.ReadFile(got); err != nil || !bytes.Equal(b, build) {
			t.Errorf("%s: %s holds %q (%v), want the embedded build", tc.name, got, b, err)
		}
	}
}
