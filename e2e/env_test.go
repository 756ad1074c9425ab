//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

type envList struct {
	CatalogVersion string `json:"catalog_version"`
	Environments   []struct {
		Name      string `json:"name"`
		Installed bool   `json:"installed"`
		State     string `json:"state"`
	} `json:"environments"`
}

func TestEnvListAndInspect(t *testing.T) {
	r := pyro(t, nil, "env", "list")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "Catalog version: ") {
		t.Fatalf("exit %d stdout:\n%s", r.code, r.stdout)
	}
	for _, want := range []string{"debian:12 [installed]", "debian:12-base [", "debian:12-build ["} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("env list lacks %q:\n%s", want, r.stdout)
		}
	}
	var list envList
	pyroJSON(t, &list, nil, "env", "list", "--json")
	if len(list.Environments) != 3 || list.Environments[0].Name != "debian:12" || !list.Environments[0].Installed || list.Environments[0].State != "warm" {
		t.Errorf("env list --json: %+v", list)
	}
	var info struct {
		Name      string `json:"name"`
		Installed bool   `json:"installed"`
		Digest    string `json:"digest"`
		SizeBytes int64  `json:"size_bytes"`
		Kernel    string `json:"kernel"`
		Packages  []struct {
			Name, Version string
		} `json:"packages"`
	}
	pyroJSON(t, &info, nil, "env", "inspect", "debian:12", "--json")
	hasGit := false
	for _, p := range info.Packages {
		hasGit = hasGit || p.Name == "git" && p.Version != ""
	}
	if !info.Installed || !strings.HasPrefix(info.Digest, "sha256:") || info.SizeBytes <= 0 || !strings.Contains(info.Kernel, "cloud-amd64") || !hasGit {
		t.Errorf("inspect: %+v", info)
	}
	r = pyro(t, nil, "env", "inspect", "nope:1")
	if r.code != 1 || !strings.Contains(r.stderr, "unknown environment") {
		t.Errorf("inspect of an unknown name: exit %d stderr:\n%s", r.code, r.stderr)
	}
}

func TestEnvPullIsANoOpWhenInstalled(t *testing.T) {
	var res struct {
		Action string `json:"action"`
	}
	r := pyroJSON(t, &res, nil, "env", "pull", "debian:12", "--json")
	if r.code != 0 || res.Action != "already_installed" || r.dur > 5*time.Second {
		t.Errorf("exit %d action %q in %s", r.code, res.Action, r.dur)
	}
}

// A pull interrupted halfway leaves nothing that looks installed; two
// pulls of one environment at once both succeed with one build; prune
// then frees what nothing uses.
func TestEnvPullInterruptedThenConcurrent(t *testing.T) {
	cache := t.TempDir()
	env := []string{"PYRO_ENV_CACHE=" + cache}
	// The Debian package cache of the main cache is reused, so the builds
	// below do not download everything again.
	if home, err := os.UserHomeDir(); err == nil {
		if debs := filepath.Join(home, ".cache", "pyro", "environments", "debs"); dirExists(debs) {
			os.Symlink(debs, filepath.Join(cache, "debs"))
		}
	}

	cmd, stderr := startPyro(t, env, "env", "pull", "debian:12-base")
	waitFor(t, stderr, "step=debootstrap", 60*time.Second)
	time.Sleep(2 * time.Second)
	cmd.Process.Signal(syscall.SIGINT)
	cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code == 0 {
		t.Fatalf("interrupted pull exited 0; stderr:\n%s", stderr.String())
	}
	var list envList
	pyroJSON(t, &list, env, "env", "list", "--json")
	for _, e := range list.Environments {
		if e.Installed {
			t.Errorf("%s looks installed after an interrupted pull", e.Name)
		}
	}
	if entries, _ := os.ReadDir(filepath.Join(cache, "tmp")); len(entries) != 0 {
		t.Errorf("interrupted pull left work behind: %v", entries)
	}

	type out struct{ r result }
	done := make(chan result, 2)
	for i := 0; i < 2; i++ {
		go func() { done <- runPyro(t, env, "env", "pull", "debian:12-base", "--json") }()
	}
	built := 0
	for i := 0; i < 2; i++ {
		r := <-done
		if r.code != 0 {
			t.Fatalf("concurrent pull: exit %d stderr:\n%s", r.code, r.stderr)
		}
		if strings.Contains(r.stdout, `"action": "built"`) {
			built++
		}
	}
	if built != 1 {
		t.Errorf("%d of two concurrent pulls built the environment, want 1", built)
	}
	var res runResult
	r := pyroJSON(t, &res, env, "run", "debian:12-base", "--json", "--", "cat", "/etc/debian_version")
	if r.code != 0 || !strings.HasPrefix(res.Stdout, "12.") {
		t.Errorf("run in the pulled environment: exit %d stdout %q stderr:\n%s", r.code, res.Stdout, r.stderr)
	}

	// A stray blob is pruned; the environment's own blobs are kept.
	stray := filepath.Join(cache, "blobs", "sha256", strings.Repeat("ab", 32))
	if err := os.WriteFile(stray, []byte("stray"), 0o644); err != nil {
		t.Fatal(err)
	}
	var pr struct {
		RemovedBlobs int   `json:"removed_blobs"`
		FreedBytes   int64 `json:"freed_bytes"`
	}
	pyroJSON(t, &pr, env, "env", "prune", "--json")
	if pr.RemovedBlobs != 1 || pr.FreedBytes < 5 || fileExists(stray) {
		t.Errorf("prune: %+v", pr)
	}
	r = pyro(t, env, "run", "debian:12-base", "--", "true")
	if r.code != 0 {
		t.Errorf("prune broke the installed environment: exit %d stderr:\n%s", r.code, r.stderr)
	}
}

func dirExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

type doctorReport struct {
	Platform     string `json:"platform"`
	Runtime      string `json:"runtime"`
	Accelerator  string `json:"accelerator"`
	Capabilities struct {
		VMBoot    bool `json:"vm_boot"`
		GuestExec bool `json:"guest_exec"`
	} `json:"capabilities"`
	Environment *struct {
		Name, State string
	} `json:"environment"`
	Checks []struct {
		Name, Status, Detail, Fix string
	} `json:"checks"`
}

func TestDoctor(t *testing.T) {
	r := pyro(t, nil, "doctor")
	for _, want := range []string{"Platform: linux-x86_64", "Runtime: PASS", "KVM: exists=", "Accelerator: ", "Environment cache: ", "Catalog version: ", "Capabilities: vm_boot=yes guest_exec=yes", "Networking: "} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("doctor lacks %q:\n%s", want, r.stdout)
		}
	}
	var rep doctorReport
	pyroJSON(t, &rep, nil, "doctor", "--json", "--environment", "debian:12")
	if rep.Runtime != "PASS" || rep.Environment == nil || rep.Environment.State != "warm" || (rep.Accelerator != "tcg" && rep.Accelerator != "kvm") {
		t.Errorf("doctor --json: %+v", rep)
	}
	// A failing check names its fix.
	pyroJSON(t, &rep, []string{"PATH=" + t.TempDir()}, "doctor", "--json")
	failed := false
	for _, c := range rep.Checks {
		if c.Status == "FAIL" {
			failed = true
			if c.Fix == "" {
				t.Errorf("FAIL without a fix: %+v", c)
			}
		}
	}
	if !failed || rep.Runtime != "FAIL" || rep.Capabilities.VMBoot {
		t.Errorf("doctor without QEMU in PATH: %+v", rep)
	}
}
