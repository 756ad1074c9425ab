//go:build e2e

package e2e

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

type workspaceJSON struct {
	WorkspaceID   string            `json:"workspace_id"`
	Name          string            `json:"name"`
	Labels        map[string]string `json:"labels"`
	State         string            `json:"state"`
	Environment   string            `json:"environment"`
	ExecutionMode string            `json:"execution_mode"`
	CommandCount  int               `json:"command_count"`
	LastError     string            `json:"last_error"`
	WorkspaceSeed struct {
		Mode     string `json:"mode"`
		SeedPath string `json:"seed_path"`
	} `json:"workspace_seed"`
}

type execJSON struct {
	ExitCode int    `json:"exit_code"`
	Stdout   string `json:"stdout"`
	Stderr   string `json:"stderr"`
	TimedOut bool   `json:"timed_out"`
}

type diffJSON struct {
	Changed bool `json:"changed"`
	Summary struct {
		Added, Modified, Deleted, Binary int
		TypeChanged                      int `json:"type_changed"`
	} `json:"summary"`
	Changes []struct {
		Path, Change string
		Binary       bool
	} `json:"changes"`
	Patch string `json:"patch"`
}

// wsEnv gives a test its own state directory, shared by the pyro commands
// it runs.
func wsEnv(t *testing.T) []string {
	return []string{"PYRO_HOME=" + t.TempDir()}
}

func makeSeed(t *testing.T) string {
	dir := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(dir, "src"), 0o755))
	must(t, os.MkdirAll(filepath.Join(dir, "empty"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "README.md"), []byte("# demo\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "src", "app.py"), []byte("def main():\n    return 1\n\nprint(main())\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "logo.bin"), []byte{0, 1, 2, 0xff, 0, 0xfe}, 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "run.sh"), []byte("#!/bin/sh\necho ran\n"), 0o755))
	must(t, os.Symlink("src/app.py", filepath.Join(dir, "app-link")))
	return dir
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func createWorkspace(t *testing.T, env []string, args ...string) workspaceJSON {
	t.Helper()
	var ws workspaceJSON
	r := pyroWSJSON(t, &ws, env, append([]string{"workspace", "create", "debian:12", "--json"}, args...)...)
	if r.code != 0 || ws.WorkspaceID == "" || ws.State != "started" {
		t.Fatalf("create: exit %d %+v\nstderr:\n%s", r.code, ws, r.stderr)
	}
	t.Cleanup(func() { runPyro(t, env, "workspace", "delete", ws.WorkspaceID, "--force") })
	return ws
}

// pyroNoLeakCheck runs pyro while workspace VMs are meant to stay up.
func pyroWS(t *testing.T, env []string, args ...string) result {
	t.Helper()
	return runPyro(t, env, args...)
}

func pyroWSJSON(t *testing.T, v any, env []string, args ...string) result {
	t.Helper()
	r := runPyro(t, env, args...)
	if err := json.Unmarshal([]byte(r.stdout), v); err != nil {
		t.Fatalf("pyro %v: stdout is not JSON (%v):\n%s\nstderr:\n%s", args, err, r.stdout, r.stderr)
	}
	return r
}

func TestWorkspaceLifecycle(t *testing.T) {
	env := wsEnv(t)
	seedDir := makeSeed(t)
	ws := createWorkspace(t, env, "--seed-path", seedDir, "--name", "life", "--label", "issue=123")
	if ws.Name != "life" || ws.Labels["issue"] != "123" || ws.WorkspaceSeed.Mode != "directory" || ws.ExecutionMode != "guest_serial" {
		t.Errorf("created %+v", ws)
	}

	t.Run("seed arrived intact", func(t *testing.T) {
		var ex execJSON
		r := pyroWSJSON(t, &ex, env, "workspace", "exec", "life", "--json", "--",
			"sh", "-c", "cat README.md; readlink app-link; test -d empty && echo empty-dir; od -An -tx1 logo.bin; ./run.sh; pwd")
		want := "# demo\nsrc/app.py\nempty-dir\n 00 01 02 ff 00 fe\nran\n/workspace\n"
		if r.code != 0 || ex.Stdout != want {
			t.Errorf("exit %d stdout %q, want %q; stderr %s", r.code, ex.Stdout, want, r.stderr)
		}
	})

	t.Run("exec from two processes at once", func(t *testing.T) {
		done := make(chan result, 2)
		for _, word := range []string{"one", "two"} {
			go func() {
				done <- runPyro(t, env, "workspace", "exec", "life", "--", "sh", "-c", "sleep 1; echo "+word)
			}()
		}
		got := map[string]bool{}
		for i := 0; i < 2; i++ {
			r := <-done
			if r.code != 0 {
				t.Errorf("exit %d stderr %s", r.code, r.stderr)
			}
			got[strings.TrimSpace(r.stdout)] = true
		}
		if !got["one"] || !got["two"] {
			t.Errorf("outputs %v", got)
		}
	})

	t.Run("edit, patch, diff", func(t *testing.T) {
		r := pyroWS(t, env, "workspace", "file", "write", "life", "notes/todo.txt", "--text", "fix the bug\n")
		if r.code != 0 {
			t.Fatalf("file write: exit %d %s", r.code, r.stderr)
		}
		patch := "--- a/src/app.py\n+++ b/src/app.py\n@@ -1,4 +1,4 @@\n def main():\n-    return 1\n+    return 2\n \n print(main())\n"
		r = pyroWS(t, env, "workspace", "patch", "apply", "life", "--patch", patch)
		if r.code != 0 || !strings.Contains(r.stdout, "/workspace/src/app.py") {
			t.Fatalf("patch apply: exit %d stdout %s stderr %s", r.code, r.stdout, r.stderr)
		}
		r = pyroWS(t, env, "workspace", "exec", "life", "--", "sh", "-c", "rm README.md; printf '\\001\\002' > logo.bin; python3 -V 2>/dev/null; true")
		if r.code != 0 {
			t.Fatalf("exec: %d %s", r.code, r.stderr)
		}
		var d diffJSON
		pyroWSJSON(t, &d, env, "workspace", "diff", "life", "--json")
		if !d.Changed || d.Summary.Added != 1 || d.Summary.Modified != 2 || d.Summary.Deleted != 1 || d.Summary.Binary != 1 || d.Summary.TypeChanged != 0 {
			t.Errorf("diff summary %+v changes %+v", d.Summary, d.Changes)
		}
		for _, want := range []string{"-    return 1\n+    return 2\n", "+++ b/notes/todo.txt", "--- a/README.md\n+++ /dev/null", "Binary files a/logo.bin and b/logo.bin differ"} {
			if !strings.Contains(d.Patch, want) {
				t.Errorf("diff patch lacks %q:\n%s", want, d.Patch)
			}
		}
		if len(d.Changes) != 4 {
			t.Errorf("changes %+v", d.Changes)
		}
	})

	t.Run("export a directory and a file", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "src-out")
		r := pyroWS(t, env, "workspace", "export", "life", "src", "--output", out)
		if r.code != 0 {
			t.Fatalf("export: exit %d %s", r.code, r.stderr)
		}
		data, err := os.ReadFile(filepath.Join(out, "app.py"))
		if err != nil || !strings.Contains(string(data), "return 2") {
			t.Errorf("exported app.py: %q %v", data, err)
		}
		file := filepath.Join(t.TempDir(), "todo.txt")
		r = pyroWS(t, env, "workspace", "export", "life", "notes/todo.txt", "--output", file)
		if data, _ := os.ReadFile(file); r.code != 0 || string(data) != "fix the bug\n" {
			t.Errorf("file export: exit %d content %q %s", r.code, data, r.stderr)
		}
	})

	t.Run("results larger than an event", func(t *testing.T) {
		// 3,000 files: the list and the diff's change list are far over a
		// control frame; a directory with one file of its own name stays a
		// directory when exported.
		r := pyroWS(t, env, "workspace", "exec", "life", "--", "sh", "-c",
			"mkdir -p many same && for i in $(seq 3000); do echo $i > many/file-$i.txt; done && echo x > same/same")
		if r.code != 0 {
			t.Fatalf("setup: %d %s", r.code, r.stderr)
		}
		var list struct {
			Entries   []struct{ Path string } `json:"entries"`
			Truncated bool                    `json:"truncated"`
		}
		pyroWSJSON(t, &list, env, "workspace", "file", "list", "life", "many", "--json")
		if len(list.Entries) != 3000 || list.Truncated {
			t.Errorf("listed %d entries, truncated=%v", len(list.Entries), list.Truncated)
		}
		var d diffJSON
		pyroWSJSON(t, &d, env, "workspace", "diff", "life", "--json")
		if d.Summary.Added < 3001 || len(d.Changes) < 3001 {
			t.Errorf("diff: %+v, %d changes", d.Summary, len(d.Changes))
		}
		out := filepath.Join(t.TempDir(), "same-out")
		r = pyroWS(t, env, "workspace", "export", "life", "same", "--output", out)
		if data, err := os.ReadFile(filepath.Join(out, "same")); r.code != 0 || err != nil || string(data) != "x\n" {
			t.Errorf("export of a directory holding one file of its name: %d %v %s", r.code, err, r.stderr)
		}
		pyroWS(t, env, "workspace", "exec", "life", "--", "rm", "-rf", "many", "same")
	})

	t.Run("logs and summary", func(t *testing.T) {
		var logs struct {
			Count   int `json:"count"`
			Entries []struct {
				Command  string `json:"command"`
				ExitCode int    `json:"exit_code"`
				Stdout   string `json:"stdout"`
			} `json:"entries"`
		}
		pyroWSJSON(t, &logs, env, "workspace", "logs", "life", "--json")
		if logs.Count < 6 || !strings.Contains(logs.Entries[0].Command, "cat README.md") {
			t.Errorf("logs %+v", logs)
		}
		var st workspaceJSON
		pyroWSJSON(t, &st, env, "workspace", "status", "life", "--json")
		if st.CommandCount != logs.Count || st.State != "started" {
			t.Errorf("status %+v, %d commands logged", st, logs.Count)
		}
		r := pyroWS(t, env, "workspace", "summary", "life")
		if r.code != 0 || !strings.Contains(r.stdout, "1 added, 2 modified, 1 deleted") {
			t.Errorf("summary: exit %d\n%s", r.code, r.stdout)
		}
	})

	t.Run("reset restores the seed", func(t *testing.T) {
		r := pyroWS(t, env, "workspace", "reset", "life")
		if r.code != 0 {
			t.Fatalf("reset: exit %d %s", r.code, r.stderr)
		}
		var d diffJSON
		pyroWSJSON(t, &d, env, "workspace", "diff", "life", "--json")
		if d.Changed {
			t.Errorf("diff after reset: %+v", d)
		}
		var ex execJSON
		pyroWSJSON(t, &ex, env, "workspace", "exec", "life", "--json", "--", "sh", "-c", "cat README.md src/app.py; test -e notes && echo notes")
		if !strings.Contains(ex.Stdout, "# demo") || !strings.Contains(ex.Stdout, "return 1") || strings.Contains(ex.Stdout, "notes") {
			t.Errorf("after reset: %q", ex.Stdout)
		}
		var st workspaceJSON
		pyroWSJSON(t, &st, env, "workspace", "status", "life", "--json")
		if st.WorkspaceID != ws.WorkspaceID || st.Name != "life" || st.CommandCount != 1 {
			t.Errorf("after reset: %+v", st)
		}
	})

	t.Run("delete leaves nothing", func(t *testing.T) {
		r := pyroWS(t, env, "workspace", "delete", "life")
		if r.code != 0 {
			t.Fatalf("delete: %d %s", r.code, r.stderr)
		}
		assertNoVMLeft(t)
		home := strings.TrimPrefix(env[0], "PYRO_HOME=")
		entries, _ := os.ReadDir(filepath.Join(home, "workspaces"))
		if len(entries) != 0 {
			t.Errorf("left in the state directory: %v", entries)
		}
		r = pyroWS(t, env, "workspace", "status", "life")
		if r.code != 1 || !strings.Contains(r.stderr, `no workspace named "life"`) {
			t.Errorf("status after delete: %d %s", r.code, r.stderr)
		}
	})
}

func TestWorkspaceSupervisorKilled(t *testing.T) {
	env := wsEnv(t)
	ws := createWorkspace(t, env)
	home := strings.TrimPrefix(env[0], "PYRO_HOME=")
	var boot struct {
		PID    int `json:"pid"`
		VMMPID int `json:"vmm_pid"`
	}
	data, err := os.ReadFile(filepath.Join(home, "workspaces", ws.WorkspaceID, "supervisor.json"))
	must(t, err)
	must(t, json.Unmarshal(data, &boot))
	must(t, syscall.Kill(boot.PID, syscall.SIGKILL))
	deadline := time.Now().Add(5 * time.Second)
	for alive(boot.VMMPID) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if alive(boot.VMMPID) {
		t.Errorf("QEMU %d outlived its supervisor", boot.VMMPID)
	}
	var st workspaceJSON
	pyroWSJSON(t, &st, env, "workspace", "status", ws.WorkspaceID, "--json")
	if st.State != "stopped" || !strings.Contains(st.LastError, "supervisor") {
		t.Errorf("status after kill -9: %+v", st)
	}
	r := pyroWS(t, env, "workspace", "exec", ws.WorkspaceID, "--", "true")
	if r.code != 125 || !strings.Contains(r.stderr, "pyro workspace start") {
		t.Errorf("exec on a stopped workspace: %d %s", r.code, r.stderr)
	}
	r = pyroWS(t, env, "workspace", "delete", ws.WorkspaceID)
	if r.code != 0 {
		t.Errorf("delete: %d %s", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(home, "workspaces", ws.WorkspaceID)); !os.IsNotExist(err) {
		t.Errorf("workspace directory left: %v", err)
	}
	assertNoVMLeft(t)
}

func writeTar(t *testing.T, entries []tar.Header) string {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range entries {
		h := h
		var body []byte
		if h.Typeflag == tar.TypeReg {
			body = []byte("x")
			h.Size = 1
		}
		must(t, tw.WriteHeader(&h))
		tw.Write(body)
	}
	must(t, tw.Close())
	p := filepath.Join(t.TempDir(), "seed.tar")
	must(t, os.WriteFile(p, buf.Bytes(), 0o644))
	return p
}

func TestWorkspaceBadInput(t *testing.T) {
	env := wsEnv(t)
	// Seeds refused before anything is created.
	for name, entries := range map[string][]tar.Header{
		"dotdot":        {{Name: "../evil", Typeflag: tar.TypeReg, Mode: 0o644}},
		"absolute":      {{Name: "/etc/evil", Typeflag: tar.TypeReg, Mode: 0o644}},
		"device":        {{Name: "dev", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3, Mode: 0o644}},
		"through link":  {{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "/etc"}, {Name: "l/passwd", Typeflag: tar.TypeReg, Mode: 0o644}},
		"outside hlink": {{Name: "h", Typeflag: tar.TypeLink, Linkname: "../../etc/passwd"}},
	} {
		r := pyroWS(t, env, "workspace", "create", "debian:12", "--seed-path", writeTar(t, entries))
		if r.code != 1 || !strings.Contains(r.stderr, "seed") {
			t.Errorf("seed %s: exit %d stderr %s", name, r.code, r.stderr)
		}
	}
	if entries, _ := os.ReadDir(filepath.Join(strings.TrimPrefix(env[0], "PYRO_HOME="), "workspaces")); len(entries) != 0 {
		t.Errorf("refused seeds left workspaces: %v", entries)
	}
	assertNoVMLeft(t)

	ws := createWorkspace(t, env, "--name", "bad")
	r := pyroWS(t, env, "workspace", "exec", "bad", "--", "sh", "-c", "ln -s /etc/passwd out-link; ln -s /etc etc-link; mkdir d; ln -s ../../etc d/up; head -c 2000000 /dev/zero > big")
	if r.code != 0 {
		t.Fatalf("setup: %d %s", r.code, r.stderr)
	}
	existing := filepath.Join(t.TempDir(), "exists")
	must(t, os.WriteFile(existing, []byte("keep"), 0o644))
	symlinkOut := filepath.Join(t.TempDir(), "link-out")
	must(t, os.Symlink(t.TempDir(), symlinkOut))
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"read ..", []string{"workspace", "file", "read", "bad", "../etc/passwd"}, "outside /workspace"},
		{"read absolute outside", []string{"workspace", "file", "read", "bad", "/etc/passwd"}, "outside /workspace"},
		{"read symlink out", []string{"workspace", "file", "read", "bad", "out-link"}, "outside /workspace"},
		{"read through dir symlink", []string{"workspace", "file", "read", "bad", "etc-link/passwd"}, "outside /workspace"},
		{"write outside", []string{"workspace", "file", "write", "bad", "/etc/evil", "--text", "x"}, "outside /workspace"},
		{"write through symlink", []string{"workspace", "file", "write", "bad", "etc-link/evil", "--text", "x"}, "outside /workspace"},
		{"write non-UTF-8", []string{"workspace", "file", "write", "bad", "x.txt", "--text", "\xff\xfe"}, "not valid UTF-8"},
		{"read over the limit", []string{"workspace", "file", "read", "bad", "big", "--max-bytes", "99999999999"}, "invalid max bytes"},
		{"export symlink out", []string{"workspace", "export", "bad", "out-link", "--output", filepath.Join(t.TempDir(), "o")}, "outside /workspace"},
		{"export tree with link out", []string{"workspace", "export", "bad", "d", "--output", filepath.Join(t.TempDir(), "o")}, "points outside the tree"},
		{"export over existing", []string{"workspace", "export", "bad", "big", "--output", existing}, "exists"},
		{"export over symlink", []string{"workspace", "export", "bad", "big", "--output", symlinkOut}, "exists"},
		{"malformed patch", []string{"workspace", "patch", "apply", "bad", "--patch", "this is not a diff"}, "patch"},
		{"patch outside", []string{"workspace", "patch", "apply", "bad", "--patch", "--- a/../etc/passwd\n+++ b/../etc/passwd\n@@ -1 +1 @@\n-a\n+b\n"}, "patch"},
		{"unknown workspace", []string{"workspace", "exec", "nope", "--", "true"}, `no workspace named "nope"`},
		{"duplicate name", []string{"workspace", "create", "debian:12", "--name", "bad"}, `a workspace named "bad" exists`},
		{"bad label", []string{"workspace", "update", "bad", "--label", "-bad=x"}, "invalid label key"},
		{"cwd outside", []string{"workspace", "exec", "bad", "--cwd", "/etc", "--", "true"}, "outside /workspace"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := pyroWS(t, env, tc.args...)
			if r.code == 0 || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("exit %d, stderr %q lacks %q", r.code, r.stderr, tc.want)
			}
		})
	}
	if data, _ := os.ReadFile(existing); string(data) != "keep" {
		t.Errorf("export overwrote a file: %q", data)
	}
	var d diffJSON
	pyroWSJSON(t, &d, env, "workspace", "diff", "bad", "--json")
	if d.Summary.Added != 4 || d.Summary.Modified != 0 || len(d.Changes) != 4 {
		t.Errorf("refused operations changed the workspace: %+v %+v", d.Summary, d.Changes)
	}

	t.Run("delete while an exec runs", func(t *testing.T) {
		cmd, stderr := startPyro(t, env, "workspace", "exec", "bad", "--", "sleep", "20")
		time.Sleep(3 * time.Second)
		r := pyroWS(t, env, "workspace", "delete", "bad")
		if r.code != 1 || !strings.Contains(r.stderr, "busy") {
			t.Errorf("delete during exec: exit %d %s", r.code, r.stderr)
		}
		var st workspaceJSON
		pyroWSJSON(t, &st, env, "workspace", "status", "bad", "--json")
		if st.State != "started" {
			t.Errorf("refused delete changed the workspace: %+v", st)
		}
		r = pyroWS(t, env, "workspace", "delete", "bad", "--force")
		if r.code != 0 {
			t.Errorf("forced delete: %d %s", r.code, r.stderr)
		}
		cmd.Wait()
		if code := cmd.ProcessState.ExitCode(); code == 0 {
			t.Errorf("exec survived its workspace's deletion with exit 0; stderr %s", stderr.String())
		}
		assertNoVMLeft(t)
	})
	_ = ws
}

// Without QEMU, and only with --allow-host-compat, a workspace's agent runs
// on the host in namespaces; its writable layer is the same disk as a VM's,
// on a loop device, so it lives through stop and start, and goes with
// delete.
func TestWorkspaceHostCompat(t *testing.T) {
	bin := t.TempDir() // a PATH with mkfs.ext4 and without QEMU
	must(t, os.Symlink("/usr/sbin/mkfs.ext4", filepath.Join(bin, "mkfs.ext4")))
	env := append(wsEnv(t), "PATH="+bin)

	r := pyroWS(t, env, "workspace", "create", "debian:12")
	if r.code != 1 || !strings.Contains(r.stderr, "--allow-host-compat") {
		t.Errorf("create without the flag: exit %d, stderr:\n%s", r.code, r.stderr)
	}
	ws := createWorkspace(t, env, "--allow-host-compat", "--seed-path", makeSeed(t))
	if ws.ExecutionMode != "host_compat" {
		t.Fatalf("execution_mode %q, want host_compat", ws.ExecutionMode)
	}
	id := ws.WorkspaceID

	var ex execJSON
	pyroWSJSON(t, &ex, env, "workspace", "exec", id, "--json", "--", "sh", "-c",
		"cat /etc/debian_version; readlink /proc/self/ns/pid; echo new > notes.txt; rm run.sh")
	lines := strings.Split(strings.TrimSpace(ex.Stdout), "\n")
	hostNS, _ := os.Readlink("/proc/self/ns/pid")
	// Debian 12's root, and a PID namespace of its own.
	if ex.ExitCode != 0 || len(lines) != 2 || !strings.HasPrefix(lines[0], "12.") || !strings.HasPrefix(lines[1], "pid:[") || lines[1] == hostNS {
		t.Fatalf("exec: %+v (host pid namespace %s)", ex, hostNS)
	}
	if devs := loopDevicesOf(t, id, 1); len(devs) != 1 {
		t.Errorf("loop devices of the running workspace's disk: %v, want one", devs)
	}
	// The agent flushes its layer and exits at once; a stop that had to
	// wait for the supervisor's kill would take its 20 s grace.
	start := time.Now()
	if r := pyroWS(t, env, "workspace", "stop", id); r.code != 0 {
		t.Fatalf("stop: exit %d\n%s", r.code, r.stderr)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("stop took %s: the agent did not power off", d)
	}
	if devs := loopDevicesOf(t, id, 0); len(devs) != 0 {
		t.Errorf("loop devices still attached to the stopped workspace's disk: %v", devs)
	}
	if r := pyroWS(t, env, "workspace", "start", id); r.code != 0 {
		t.Fatalf("start: exit %d\n%s", r.code, r.stderr)
	}
	var diff diffJSON
	pyroWSJSON(t, &diff, env, "workspace", "diff", id, "--json")
	if !diff.Changed || diff.Summary.Added != 1 || diff.Summary.Deleted != 1 || diff.Summary.Modified != 0 {
		t.Errorf("diff after stop and start: %+v", diff.Summary)
	}
	if r := pyroWS(t, env, "workspace", "reset", id); r.code != 0 {
		t.Fatalf("reset: exit %d\n%s", r.code, r.stderr)
	}
	pyroWSJSON(t, &ex, env, "workspace", "exec", id, "--json", "--", "sh", "-c", "ls; cat README.md")
	if ex.Stdout != "README.md\napp-link\nempty\nlogo.bin\nrun.sh\nsrc\n# demo\n" {
		t.Errorf("after reset: %q", ex.Stdout)
	}
	if r := pyroWS(t, env, "workspace", "delete", id); r.code != 0 {
		t.Fatalf("delete: exit %d\n%s", r.code, r.stderr)
	}
	if devs := loopDevicesOf(t, id, 0); len(devs) != 0 {
		t.Errorf("loop devices left attached after delete: %v", devs)
	}
	if pids := processesWithEnv("PYRO_HOSTCOMPAT_AGENT=1"); len(pids) != 0 {
		t.Errorf("host-compat agents left running: %v", pids)
	}
}

// loopDevicesOf lists the loop devices backed by workspace id's disk. The
// backing file's path is matched on the workspace's directory and file
// name: the kernel may show it relative to a mount the agent's namespace
// saw.
func loopDevicesOf(t *testing.T, id string, want int) []string {
	t.Helper()
	var devs []string
	// The kernel detaches an autoclear device a moment after its last
	// user goes: wait up to 3 s for want devices.
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		devs = devs[:0]
		files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
		for _, f := range files {
			if b, err := os.ReadFile(f); err == nil && strings.Contains(string(b), "/"+id+"/disk.ext4") {
				devs = append(devs, f)
			}
		}
		if len(devs) == want || time.Now().After(deadline) {
			return devs
		}
	}
}

// processesWithEnv lists the processes whose environment holds kv.
func processesWithEnv(kv string) []int {
	return processesWhere("environ", func(env []string) bool { return slices.Contains(env, kv) })
}
