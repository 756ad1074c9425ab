package guest

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestParseCmdline(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want map[string]string
	}{
		{"", map[string]string{}},
		{"\n", map[string]string{}},
		{"console=ttyS0 quiet pyro.root=/dev/vda pyro.upper=tmpfs\n", map[string]string{
			"console": "ttyS0", "quiet": "", "pyro.root": "/dev/vda", "pyro.upper": "tmpfs",
		}},
		{"pyro.probe=1", map[string]string{"pyro.probe": "1"}},
		{"pyro.probe", map[string]string{"pyro.probe": ""}},
		{"a=b=c  \t d=", map[string]string{"a": "b=c", "d": ""}},
		{"x=1 x=2", map[string]string{"x": "2"}}, // the last one wins, as in the kernel
		{"pyro.modules=virtio_net,vsock rdinit=/init", map[string]string{"pyro.modules": "virtio_net,vsock", "rdinit": "/init"}},
	} {
		if got := parseCmdline(tc.in); !maps.Equal(got, tc.want) {
			t.Errorf("parseCmdline(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
	if _, ok := parseCmdline("quiet pyro.probe")[ParamProbe]; !ok {
		t.Error("a bare pyro.probe is not seen")
	}
}

func TestMergeEnv(t *testing.T) {
	base := []string{"PATH=/bin", "HOME=/root", "LANG=C.UTF-8"}
	for _, tc := range []struct {
		name  string
		extra []string
		want  []string
	}{
		{"nothing", nil, base},
		{"override", []string{"HOME=/work"}, []string{"PATH=/bin", "HOME=/work", "LANG=C.UTF-8"}},
		{"add", []string{"FOO=1"}, []string{"PATH=/bin", "HOME=/root", "LANG=C.UTF-8", "FOO=1"}},
		{"empty value", []string{"LANG="}, []string{"PATH=/bin", "HOME=/root", "LANG="}},
		{"prefix of another key", []string{"PAT=x", "HOM=y"}, []string{"PATH=/bin", "HOME=/root", "LANG=C.UTF-8", "PAT=x", "HOM=y"}},
		{"longer key", []string{"PATHS=x"}, []string{"PATH=/bin", "HOME=/root", "LANG=C.UTF-8", "PATHS=x"}},
		{"value with =", []string{"OPTS=a=b"}, []string{"PATH=/bin", "HOME=/root", "LANG=C.UTF-8", "OPTS=a=b"}},
		{"later entry wins", []string{"FOO=1", "FOO=2", "PATH=/a", "PATH=/b"}, []string{"PATH=/b", "HOME=/root", "LANG=C.UTF-8", "FOO=2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := slices.Clone(base)
			got := mergeEnv(base, tc.extra)
			if !slices.Equal(got, tc.want) {
				t.Errorf("mergeEnv = %q, want %q", got, tc.want)
			}
			if !slices.Equal(base, before) {
				t.Errorf("mergeEnv changed its base: %q", base)
			}
		})
	}
}

func TestLookupEnv(t *testing.T) {
	env := []string{"PATH=/bin", "PATHX=/no", "EMPTY="}
	for k, want := range map[string]string{"PATH": "/bin", "PATHX": "/no", "EMPTY": "", "MISSING": "", "PAT": ""} {
		if got := lookupEnv(env, k); got != want {
			t.Errorf("lookupEnv(%s) = %q, want %q", k, got, want)
		}
	}
}

func TestLookPath(t *testing.T) {
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a := filepath.Join(dir, "a")
	b := filepath.Join(dir, "b")
	cwd := filepath.Join(dir, "cwd")
	for _, d := range []string{a, b, cwd, filepath.Join(a, "subdir")} {
		os.MkdirAll(d, 0o755)
	}
	write := func(p string, mode os.FileMode) {
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(a, "tool"), 0o755)
	write(filepath.Join(b, "tool"), 0o755)
	write(filepath.Join(a, "plain"), 0o644)
	write(filepath.Join(b, "plain"), 0o755)
	write(filepath.Join(a, "onlyhere"), 0o644)
	write(filepath.Join(b, "subdir"), 0o755)
	write(filepath.Join(cwd, "local"), 0o755)
	write(filepath.Join(cwd, "script"), 0o700)

	for _, tc := range []struct {
		name, argv0, path string
		want              string
		err               error
	}{
		{"first in PATH", "tool", a + ":" + b, filepath.Join(a, "tool"), nil},
		{"PATH order", "tool", b + ":" + a, filepath.Join(b, "tool"), nil},
		{"skips a non-executable", "plain", a + ":" + b, filepath.Join(b, "plain"), nil},
		{"skips a directory", "subdir", a + ":" + b, filepath.Join(b, "subdir"), nil},
		{"only a non-executable", "onlyhere", a, "", os.ErrNotExist},
		{"missing", "nothing", a + ":" + b, "", os.ErrNotExist},
		{"empty PATH", "tool", "", "", os.ErrNotExist},
		{"not in the cwd without PATH", "local", a, "", os.ErrNotExist},
		// An empty element is the command's working directory, as in a shell.
		{"empty element", "local", a + "::" + b, filepath.Join(cwd, "local"), nil},
		{"trailing empty element", "local", a + ":", filepath.Join(cwd, "local"), nil},
		{"absolute", filepath.Join(a, "tool"), "", filepath.Join(a, "tool"), nil},
		{"absolute not executable", filepath.Join(a, "plain"), a, "", os.ErrPermission},
		{"absolute directory", a, "", "", os.ErrPermission},
		{"absolute missing", filepath.Join(a, "missing"), a, "", os.ErrNotExist},
		{"relative with a slash", "./local", a, filepath.Join(cwd, "local"), nil},
		{"relative into a subdirectory", "../a/tool", "", filepath.Join(a, "tool"), nil},
		{"owner-only executable", "./script", "", filepath.Join(cwd, "script"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := lookPath(tc.argv0, tc.path, cwd)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Errorf("lookPath(%q, %q) = %q, %v; want %v", tc.argv0, tc.path, got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("lookPath(%q, %q) = %q, %v; want %q", tc.argv0, tc.path, got, err, tc.want)
			}
		})
	}
}
