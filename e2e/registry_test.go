//go:build e2e

package e2e

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// startRegistry serves a real OCI distribution registry on 127.0.0.1.
// tamper, when set, may rewrite blob responses (to test verification).
func startRegistry(t *testing.T, tamper *atomic.Value) string {
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tamper != nil {
			if f, _ := tamper.Load().(func(http.ResponseWriter, *http.Request, http.Handler) bool); f != nil && f(w, r, reg) {
				return
			}
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

type pullJSON struct {
	Environment string `json:"environment"`
	Action      string `json:"action"`
	Digest      string `json:"digest"`
	Source      string `json:"source"`
}

func TestEnvArtifactPushPullBoot(t *testing.T) {
	var tamper atomic.Value
	host := startRegistry(t, &tamper)
	var pushed struct {
		Digest string `json:"digest"`
	}
	r := pyroJSON(t, &pushed, nil, "env", "push", "debian:12", host+"/pyro/debian:12-v2", "--json")
	if r.code != 0 || !strings.HasPrefix(pushed.Digest, "sha256:") {
		t.Fatalf("push: %d %s", r.code, r.stderr)
	}
	var orig struct {
		Digest string `json:"digest"`
	}
	pyroJSON(t, &orig, nil, "env", "inspect", "debian:12", "--json")

	cache := t.TempDir()
	env := []string{"PYRO_ENV_CACHE=" + cache}

	// A registry that corrupts one blob in transit: the pull fails and the
	// cache holds nothing of it; a truncated blob too.
	for _, mode := range []string{"corrupt", "truncate"} {
		tamper.Store(func(w http.ResponseWriter, r *http.Request, next http.Handler) bool {
			if !strings.Contains(r.URL.Path, "/blobs/sha256:") || r.Method != http.MethodGet {
				return false
			}
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, r)
			body := rec.Body.Bytes()
			if len(body) > 64<<10 { // a layer, not the small config
				if mode == "corrupt" {
					body[len(body)/2] ^= 0xff
				} else {
					body = body[:len(body)/2]
				}
			}
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.Header().Del("Content-Length")
			w.WriteHeader(rec.Code)
			w.Write(body)
			return true
		})
		r = pyro(t, env, "env", "pull", "debian:12", "--registry", host+"/pyro", "--no-build")
		if r.code == 0 || !regexp.MustCompile(`failed verification|has digest|bytes, want`).MatchString(r.stderr) {
			t.Errorf("%s blob: exit %d\n%s", mode, r.code, r.stderr)
		}
		var list envList
		pyroJSON(t, &list, env, "env", "list", "--json")
		if list.Environments[0].Installed {
			t.Errorf("%s blob: debian:12 looks installed", mode)
		}
		// Whatever blobs are in the store are whole and true.
		blobs, _ := os.ReadDir(filepath.Join(cache, "blobs", "sha256"))
		for _, b := range blobs {
			f, err := os.Open(filepath.Join(cache, "blobs", "sha256", b.Name()))
			must(t, err)
			h := sha256.New()
			io.Copy(h, f)
			f.Close()
			if hex.EncodeToString(h.Sum(nil)) != b.Name() {
				t.Errorf("%s blob: the store holds a blob whose content is not its digest: %s", mode, b.Name())
			}
		}
	}
	tamper.Store((func(http.ResponseWriter, *http.Request, http.Handler) bool)(nil))

	// The real pull into the same (unpoisoned) cache.
	var p pullJSON
	r = pyroJSON(t, &p, env, "env", "pull", "debian:12", "--registry", host+"/pyro", "--no-build", "--json")
	if r.code != 0 || p.Action != "pulled" || p.Digest != orig.Digest || !strings.Contains(p.Source, host) {
		t.Fatalf("pull: exit %d %+v\n%s", r.code, p, r.stderr)
	}
	var res runResult
	r = pyroJSON(t, &res, env, "run", "debian:12", "--json", "--", "git", "--version")
	if r.code != 0 || !strings.HasPrefix(res.Stdout, "git version") {
		t.Errorf("run after pull: %d %q %s", r.code, res.Stdout, r.stderr)
	}
	start := time.Now()
	r = pyroJSON(t, &p, env, "env", "pull", "debian:12", "--registry", host+"/pyro", "--json")
	if r.code != 0 || p.Action != "already_installed" || time.Since(start) > 2*time.Second {
		t.Errorf("second pull: %+v in %s", p, time.Since(start))
	}

	// Registry down, and a name the registry does not have.
	r = pyro(t, []string{"PYRO_ENV_CACHE=" + t.TempDir()}, "env", "pull", "debian:12-base", "--registry", "127.0.0.1:9/pyro", "--no-build")
	if r.code != 1 || !strings.Contains(r.stderr, "cannot reach the registry") {
		t.Errorf("registry down: %d %s", r.code, r.stderr)
	}
	r = pyro(t, []string{"PYRO_ENV_CACHE=" + t.TempDir()}, "env", "pull", "debian:12-base", "--registry", host+"/nothing", "--no-build")
	if r.code != 1 || !strings.Contains(r.stderr, "not found") {
		t.Errorf("404: %d %s", r.code, r.stderr)
	}
	r = pyro(t, nil, "env", "pull", "Not A Ref!")
	if r.code != 1 || !strings.Contains(r.stderr, "malformed") {
		t.Errorf("malformed name: %d %s", r.code, r.stderr)
	}
	// An OCI layout directory works as a target too.
	out := filepath.Join(t.TempDir(), "layout")
	r = pyro(t, nil, "env", "push", "debian:12", "oci:"+out)
	if _, err := os.Stat(filepath.Join(out, "index.json")); r.code != 0 || err != nil {
		t.Errorf("push to a layout: %d %v %s", r.code, err, r.stderr)
	}
}

// hostBinaryLayer makes a layer of host programs and the libraries they
// load, so a test image runs without any registry of the outside world.
func hostBinaryLayer(t *testing.T, files map[string]string, extra map[string]string) v1.Layer {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	added := map[string]bool{}
	addDir := func(dir string) {
		parts := strings.Split(strings.Trim(dir, "/"), "/")
		for i := range parts {
			d := strings.Join(parts[:i+1], "/")
			if !added[d] {
				added[d] = true
				tw.WriteHeader(&tar.Header{Name: d + "/", Typeflag: tar.TypeDir, Mode: 0o755})
			}
		}
	}
	addFile := func(src, dst string) {
		data, err := os.ReadFile(src)
		must(t, err)
		fi, _ := os.Stat(src)
		addDir(filepath.Dir(dst))
		must(t, tw.WriteHeader(&tar.Header{Name: strings.TrimPrefix(dst, "/"), Typeflag: tar.TypeReg, Mode: int64(fi.Mode().Perm()), Size: int64(len(data))}))
		tw.Write(data)
	}
	libs := map[string]bool{}
	for src, dst := range files {
		addFile(src, dst)
		out, _ := exec.Command("ldd", src).Output()
		for _, m := range regexp.MustCompile(`(/[^ ]+\.so[^ ]*) \(`).FindAllStringSubmatch(string(out), -1) {
			libs[m[1]] = true
		}
		for _, m := range regexp.MustCompile(`=> (/[^ ]+) \(`).FindAllStringSubmatch(string(out), -1) {
			libs[m[1]] = true
		}
	}
	for lib := range libs {
		real, err := filepath.EvalSymlinks(lib)
		must(t, err)
		addFile(real, lib)
	}
	for name, content := range extra {
		addDir(filepath.Dir("/" + name))
		must(t, tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(content))}))
		tw.Write([]byte(content))
	}
	must(t, tw.Close())
	layer, err := tarball.LayerFromReader(bytes.NewReader(buf.Bytes()))
	must(t, err)
	return layer
}

func tarLayer(t *testing.T, headers []tar.Header) v1.Layer {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range headers {
		h := h
		var body []byte
		if h.Typeflag == tar.TypeReg {
			body = []byte(h.Linkname)
			h.Linkname = ""
			h.Size = int64(len(body))
		}
		must(t, tw.WriteHeader(&h))
		tw.Write(body)
	}
	must(t, tw.Close())
	layer, err := tarball.LayerFromReader(bytes.NewReader(buf.Bytes()))
	must(t, err)
	return layer
}

func pushImage(t *testing.T, ref string, cfg v1.Config, layers ...v1.Layer) {
	img, err := mutate.AppendLayers(empty.Image, layers...)
	must(t, err)
	cf, err := img.ConfigFile()
	must(t, err)
	cf.OS, cf.Architecture, cf.Config = "linux", "amd64", cfg
	img, err = mutate.ConfigFile(img, cf)
	must(t, err)
	r, err := name.ParseReference(ref)
	must(t, err)
	must(t, remote.Write(r, img))
}

func TestAnyOCIImageAsEnvironment(t *testing.T) {
	host := startRegistry(t, nil)
	base := hostBinaryLayer(t, map[string]string{
		"/bin/dash": "/bin/sh", "/bin/cat": "/bin/cat", "/bin/pwd": "/bin/pwd", "/usr/bin/env": "/usr/bin/env", "/bin/ls": "/bin/ls",
	}, map[string]string{
		"etc/os-release": "ID=pyrotest\nPRETTY_NAME=\"pyro test image\"\n",
		"old/gone.txt":   "lower layer",
		"opaque/lower":   "lower layer",
	})
	// The upper layer deletes a file with a whiteout and empties a
	// directory with an opaque marker.
	upper := tarLayer(t, []tar.Header{
		{Name: "old/.wh.gone.txt", Typeflag: tar.TypeReg},
		{Name: "opaque/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "opaque/.wh..wh..opq", Typeflag: tar.TypeReg},
		{Name: "opaque/upper", Typeflag: tar.TypeReg, Mode: 0o644, Linkname: "upper layer"},
		{Name: "srv/", Typeflag: tar.TypeDir, Mode: 0o755},
	})
	ref := host + "/test/tiny:1"
	pushImage(t, ref, v1.Config{Env: []string{"PATH=/usr/bin:/bin", "GREETING=hello-from-image"}, WorkingDir: "/srv", Entrypoint: []string{"/bin/false"}}, base, upper)

	cache := t.TempDir()
	// The kernel comes from an installed catalog environment: share it.
	mainCache := os.Getenv("PYRO_ENV_CACHE")
	if mainCache == "" {
		home, _ := os.UserHomeDir()
		mainCache = filepath.Join(home, ".cache", "pyro", "environments")
	}
	copyTree(t, filepath.Join(mainCache, "envs"), filepath.Join(cache, "envs"))
	must(t, os.Symlink(filepath.Join(mainCache, "blobs"), filepath.Join(cache, "blobs")))
	env := []string{"PYRO_ENV_CACHE=" + cache}

	var res runResult
	r := pyroJSON(t, &res, env, "run", ref, "--json", "--", "sh", "-c",
		"cat /etc/os-release; echo $GREETING; pwd; ls /old /opaque; test -d /workspace && echo ws")
	want := "ID=pyrotest\nPRETTY_NAME=\"pyro test image\"\nhello-from-image\n/srv\n/old:\n\n/opaque:\nupper\nws\n"
	if r.code != 0 || res.Stdout != want {
		t.Errorf("run in the image: exit %d\nstdout %q\nwant   %q\nstderr %s", r.code, res.Stdout, want, r.stderr)
	}
	var list envList
	pyroJSON(t, &list, env, "env", "list", "--json")
	found := false
	for _, e := range list.Environments {
		found = found || e.Name == ref && e.Installed
	}
	if !found {
		t.Errorf("env list lacks the image: %+v", list)
	}

	// A hostile image: refused with a clear error, nothing installed, and
	// nothing written outside.
	canary := filepath.Join(t.TempDir(), "canary")
	pushImage(t, host+"/test/evil:1", v1.Config{}, tarLayer(t, []tar.Header{
		{Name: "../../../../../../.." + canary, Typeflag: tar.TypeReg, Mode: 0o644, Linkname: "pwned"},
	}))
	r = pyro(t, env, "env", "pull", host+"/test/evil:1")
	if r.code != 1 || !strings.Contains(r.stderr, "..") {
		t.Errorf("hostile image: exit %d %s", r.code, r.stderr)
	}
	if _, err := os.Stat(canary); err == nil {
		t.Errorf("a hostile layer wrote %s", canary)
	}
	pyroJSON(t, &list, env, "env", "list", "--json")
	for _, e := range list.Environments {
		if strings.Contains(e.Name, "evil") {
			t.Errorf("the hostile image looks installed")
		}
	}
	var pr struct {
		RemovedEnvironments []string `json:"removed_environments"`
	}
	pyroJSON(t, &pr, env, "env", "prune", "--json")
	if len(pr.RemovedEnvironments) != 1 || pr.RemovedEnvironments[0] != ref {
		t.Errorf("prune of an unused image: %+v", pr)
	}
}

func copyTree(t *testing.T, src, dst string) {
	must(t, filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if fi.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	}))
}

// A pull interrupted mid-blob leaves nothing installed and nothing
// half-written in the store; a pull that cannot fit is refused before it
// downloads anything; later pulls succeed.
func TestEnvPullInterruptedAndDiskFull(t *testing.T) {
	var tamper atomic.Value
	host := startRegistry(t, &tamper)
	r := pyro(t, nil, "env", "push", "debian:12", host+"/pyro/debian:12-v2")
	if r.code != 0 {
		t.Fatalf("push: %s", r.stderr)
	}
	// Blobs trickle out slowly, so the pull is caught in the middle.
	tamper.Store(func(w http.ResponseWriter, r *http.Request, next http.Handler) bool {
		if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/blobs/sha256:") {
			return false
		}
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		body := rec.Body.Bytes()
		for len(body) > 0 && r.Context().Err() == nil {
			n := min(len(body), 1<<20)
			w.Write(body[:n])
			w.(http.Flusher).Flush()
			body = body[n:]
			time.Sleep(50 * time.Millisecond)
		}
		return true
	})
	cache := t.TempDir()
	env := []string{"PYRO_ENV_CACHE=" + cache}
	cmd, stderr := startPyro(t, env, "env", "pull", "debian:12", "--registry", host+"/pyro", "--no-build")
	waitFor(t, stderr, "phase=blob", 30*time.Second)
	time.Sleep(time.Second)
	cmd.Process.Signal(os.Interrupt)
	cmd.Wait()
	if cmd.ProcessState.ExitCode() == 0 {
		t.Fatalf("interrupted pull exited 0:\n%s", stderr.String())
	}
	var list envList
	pyroJSON(t, &list, env, "env", "list", "--json")
	if list.Environments[0].Installed {
		t.Errorf("an interrupted pull looks installed")
	}
	if entries, _ := os.ReadDir(filepath.Join(cache, "tmp")); len(entries) != 0 {
		t.Errorf("the interrupted pull left %d entries in tmp/", len(entries))
	}
	tamper.Store((func(http.ResponseWriter, *http.Request, http.Handler) bool)(nil))
	r = pyro(t, env, "env", "pull", "debian:12", "--registry", host+"/pyro", "--no-build")
	if r.code != 0 {
		t.Errorf("pull after the interrupted one: %s", r.stderr)
	}

	// A cache on a 64 MiB file system cannot take the 384 MiB environment.
	small := t.TempDir()
	if err := syscall.Mount("tmpfs", small, "tmpfs", 0, "size=64m"); err != nil {
		t.Fatalf("mounting a small tmpfs (the test needs root): %v", err)
	}
	defer syscall.Unmount(small, syscall.MNT_DETACH)
	r = pyro(t, []string{"PYRO_ENV_CACHE=" + small}, "env", "pull", "debian:12", "--registry", host+"/pyro", "--no-build")
	if r.code != 1 || !strings.Contains(r.stderr, "not enough disk space") {
		t.Errorf("pull onto a full disk: exit %d\n%s", r.code, r.stderr)
	}
	if blobs, _ := os.ReadDir(filepath.Join(small, "blobs", "sha256")); len(blobs) != 0 {
		t.Errorf("the refused pull wrote %d blobs", len(blobs))
	}
}
