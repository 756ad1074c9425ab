//go:build e2e

package e2e

import (
	"strings"
	"testing"
)

type prepareResult struct {
	Environment   string `json:"environment"`
	Pulled        bool   `json:"pulled"`
	ExecutionMode string `json:"execution_mode"`
	Template      string `json:"template"`
	RunMs         int64  `json:"run_ms"`
	Workspace     struct {
		CreateMs int64 `json:"create_ms"`
		ExecMs   int64 `json:"exec_ms"`
		ResetMs  int64 `json:"reset_ms"`
		DeleteMs int64 `json:"delete_ms"`
	} `json:"workspace"`
}

// prepare warms an environment (its run template) and proves it with a
// throwaway workspace that it deletes; --force makes the template again.
func TestPrepare(t *testing.T) {
	home := []string{"PYRO_HOME=" + t.TempDir()}
	var res prepareResult
	r := pyroJSON(t, &res, home, "prepare", "debian:12", "--json")
	if r.code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", r.code, r.stderr)
	}
	if res.Environment != "debian:12" || res.Pulled || res.ExecutionMode != "guest_serial" || res.Template != "ready" {
		t.Errorf("result %+v", res)
	}
	w := res.Workspace
	if res.RunMs <= 0 || w.CreateMs <= 0 || w.ExecMs <= 0 || w.ResetMs <= 0 || w.DeleteMs <= 0 {
		t.Errorf("timings %+v, run %d ms", w, res.RunMs)
	}
	for _, phase := range []string{"[prepare] phase=template", "[prepare] phase=prove", "phase=reset"} {
		if !strings.Contains(r.stderr, phase) {
			t.Errorf("stderr lacks %q:\n%s", phase, r.stderr)
		}
	}
	var list struct {
		Count int `json:"count"`
	}
	pyroJSON(t, &list, home, "workspace", "list", "--json")
	if list.Count != 0 {
		t.Errorf("%d workspaces left after prepare", list.Count)
	}

	// With --force the template is made again, and said so.
	r = pyro(t, home, "prepare", "--force")
	if r.code != 0 || !strings.Contains(r.stderr, "first boot of this environment") || !strings.Contains(r.stdout, "Template: ready") {
		t.Errorf("--force: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}

	for _, tc := range []struct {
		args    []string
		code    int
		message string
	}{
		{[]string{"prepare", "--network"}, 1, "guest networking is not supported yet"},
		{[]string{"prepare", "debian:99"}, 1, "unknown environment"},
		{[]string{"prepare", "debian:12", "debian:12-base"}, 2, "accepts at most 1 arg"},
	} {
		r := pyro(t, home, tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.message) {
			t.Errorf("%v: exit %d, want %d with %q; stderr:\n%s", tc.args, r.code, tc.code, tc.message, r.stderr)
		}
	}
}
