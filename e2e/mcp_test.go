//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	envcache "github.com/pyro-sandbox/pyro/internal/env"
	pyrosdk "github.com/pyro-sandbox/pyro/pyro"
)

// mcpSession serves workspace-full in-process over in-memory transports,
// with the real pyro binary as the guest agent.
func mcpSession(t *testing.T, root string, progress func(*mcp.ProgressNotificationClientRequest)) *mcp.ClientSession {
	t.Helper()
	c := pyrosdk.New(pyrosdk.Options{StateDir: t.TempDir(), AgentBinary: pyroBin})
	server, err := c.CreateServer(pyrosdk.MCPOptions{Profile: "workspace-full", HostRoots: []string{root}})
	if err != nil {
		t.Fatal(err)
	}
	st, ct := mcp.NewInMemoryTransports()
	ctx := context.Background()
	ss, err := server.Connect(ctx, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	opts := &mcp.ClientOptions{}
	if progress != nil {
		opts.ProgressNotificationHandler = func(_ context.Context, r *mcp.ProgressNotificationClientRequest) { progress(r) }
	}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "e2e", Version: "v0"}, opts).Connect(ctx, ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cs.Close()
		ss.Wait()
	})
	return cs
}

// call calls a tool and decodes its structured result into out; a tool
// error fails the test.
func call(t *testing.T, cs *mcp.ClientSession, tool string, args map[string]any, out any) {
	t.Helper()
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		t.Fatalf("%s: %v", tool, err)
	}
	if res.IsError {
		t.Fatalf("%s: tool error: %s", tool, toolText(res))
	}
	if out != nil {
		data, _ := json.Marshal(res.StructuredContent)
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s: %v", tool, err)
		}
	}
}

func toolText(res *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

func TestMCPEveryTool(t *testing.T) {
	root := t.TempDir()
	seedDir := filepath.Join(root, "seed")
	must(t, os.MkdirAll(seedDir, 0o755))
	must(t, os.WriteFile(filepath.Join(seedDir, "hello.txt"), []byte("hello\n"), 0o644))
	var mu sync.Mutex
	var phases []string
	cs := mcpSession(t, root, func(r *mcp.ProgressNotificationClientRequest) {
		mu.Lock()
		phases = append(phases, r.Params.Message)
		mu.Unlock()
	})
	ctx := context.Background()

	var run struct {
		ExitCode      int    `json:"exit_code"`
		Stdout        string `json:"stdout"`
		Command       string `json:"command"`
		ExecutionMode string `json:"execution_mode"`
	}
	call(t, cs, "vm_run", map[string]any{"command": "echo $((6*7)); git --version >/dev/null"}, &run)
	if run.ExitCode != 0 || run.Stdout != "42\n" || run.Command != "echo $((6*7)); git --version >/dev/null" || run.ExecutionMode != "guest_serial" {
		t.Errorf("vm_run: %+v", run)
	}

	params := &mcp.CallToolParams{Name: "workspace_create", Arguments: map[string]any{"seed_path": seedDir, "name": "mcp-ws", "labels": map[string]any{"via": "mcp"}}}
	params.SetProgressToken("create-1")
	res, err := cs.CallTool(ctx, params)
	if err != nil || res.IsError {
		t.Fatalf("workspace_create: %v %s", err, toolText(res))
	}
	var ws workspaceJSON
	data, _ := json.Marshal(res.StructuredContent)
	must(t, json.Unmarshal(data, &ws))
	if ws.Name != "mcp-ws" || ws.State != "started" {
		t.Fatalf("created %+v", ws)
	}
	defer cs.CallTool(ctx, &mcp.CallToolParams{Name: "workspace_delete", Arguments: map[string]any{"workspace_id": ws.WorkspaceID, "force": true}})
	mu.Lock()
	// Notifications may still be in flight when the result arrives: the
	// ones sent before the VM booted must have come.
	if len(phases) < 3 || !strings.Contains(strings.Join(phases, "\n"), "phase=start") {
		t.Errorf("progress of workspace_create: %q", phases)
	}
	mu.Unlock()

	var list struct {
		Count int `json:"count"`
	}
	call(t, cs, "workspace_list", map[string]any{}, &list)
	if list.Count != 1 {
		t.Errorf("workspace_list count %d", list.Count)
	}
	call(t, cs, "workspace_update", map[string]any{"workspace_id": "mcp-ws", "labels": map[string]any{"owner": "e2e"}}, &ws)
	if ws.Labels["owner"] != "e2e" || ws.Labels["via"] != "mcp" {
		t.Errorf("update: %+v", ws.Labels)
	}
	call(t, cs, "workspace_status", map[string]any{"workspace_id": "mcp-ws"}, &ws)

	// Concurrent calls on one workspace.
	var wg sync.WaitGroup
	outs := make([]execJSON, 3)
	for i := range outs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			call(t, cs, "workspace_exec", map[string]any{"workspace_id": "mcp-ws", "command": fmt.Sprintf("sleep 0.5; echo %d >> log.txt; echo %d", i, i)}, &outs[i])
		}(i)
	}
	wg.Wait()
	for i, o := range outs {
		if o.Stdout != fmt.Sprintf("%d\n", i) {
			t.Errorf("concurrent exec %d: %+v", i, o)
		}
	}
	call(t, cs, "workspace_file_write", map[string]any{"workspace_id": "mcp-ws", "path": "src/main.py", "text": "print('a')\n"}, nil)
	call(t, cs, "workspace_patch_apply", map[string]any{"workspace_id": "mcp-ws",
		"patch": "--- a/src/main.py\n+++ b/src/main.py\n@@ -1 +1 @@\n-print('a')\n+print('b')\n"}, nil)
	var read struct {
		Content string `json:"content"`
	}
	call(t, cs, "workspace_file_read", map[string]any{"workspace_id": "mcp-ws", "path": "src/main.py"}, &read)
	if read.Content != "print('b')\n" {
		t.Errorf("file read after patch: %q", read.Content)
	}
	var files struct {
		Entries []struct{ Path string } `json:"entries"`
	}
	call(t, cs, "workspace_file_list", map[string]any{"workspace_id": "mcp-ws", "recursive": true}, &files)
	if len(files.Entries) != 4 { // hello.txt log.txt src src/main.py
		t.Errorf("file list: %+v", files.Entries)
	}
	push := filepath.Join(root, "push")
	must(t, os.MkdirAll(push, 0o755))
	must(t, os.WriteFile(filepath.Join(push, "pushed.txt"), []byte("pushed\n"), 0o644))
	call(t, cs, "workspace_sync_push", map[string]any{"workspace_id": "mcp-ws", "source_path": push, "dest": "in"}, nil)
	var d diffJSON
	call(t, cs, "workspace_diff", map[string]any{"workspace_id": "mcp-ws"}, &d)
	if d.Summary.Added != 3 || d.Summary.Modified != 0 || !strings.Contains(d.Patch, "+print('b')") {
		t.Errorf("diff: %+v\n%s", d.Summary, d.Patch)
	}
	out := filepath.Join(root, "exported")
	call(t, cs, "workspace_export", map[string]any{"workspace_id": "mcp-ws", "path": "in", "output_path": out}, nil)
	if data, _ := os.ReadFile(filepath.Join(out, "pushed.txt")); string(data) != "pushed\n" {
		t.Errorf("export: %q", data)
	}
	var logs struct {
		Count int `json:"count"`
	}
	call(t, cs, "workspace_logs", map[string]any{"workspace_id": "mcp-ws"}, &logs)
	if logs.Count != 3 {
		t.Errorf("logs count %d", logs.Count)
	}
	call(t, cs, "workspace_summary", map[string]any{"workspace_id": "mcp-ws"}, nil)
	call(t, cs, "workspace_stop", map[string]any{"workspace_id": "mcp-ws"}, &ws)
	if ws.State != "stopped" {
		t.Errorf("after stop: %s", ws.State)
	}
	call(t, cs, "workspace_start", map[string]any{"workspace_id": "mcp-ws"}, &ws)
	call(t, cs, "workspace_file_read", map[string]any{"workspace_id": "mcp-ws", "path": "in/pushed.txt"}, &read)
	if ws.State != "started" || read.Content != "pushed\n" {
		t.Errorf("after start: %s %q", ws.State, read.Content)
	}
	call(t, cs, "workspace_reset", map[string]any{"workspace_id": "mcp-ws"}, nil)
	call(t, cs, "workspace_diff", map[string]any{"workspace_id": "mcp-ws"}, &d)
	if d.Changed {
		t.Errorf("diff after reset: %+v", d.Summary)
	}
	var del struct {
		Deleted bool `json:"deleted"`
	}
	call(t, cs, "workspace_delete", map[string]any{"workspace_id": "mcp-ws"}, &del)
	if !del.Deleted {
		t.Errorf("delete: %+v", del)
	}
	assertNoVMLeft(t)
}

func TestMCPCancelStopsTheVM(t *testing.T) {
	cs := mcpSession(t, t.TempDir(), nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "vm_run", Arguments: map[string]any{"command": "sleep 120", "timeout_seconds": 300}})
		done <- err
	}()
	deadline := time.Now().Add(90 * time.Second)
	for len(qemuProcesses()) == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(3 * time.Second) // into the exec
	cancel()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the cancelled call did not return")
	}
	assertNoVMLeft(t)
	// The server still serves.
	if _, err := cs.ListTools(context.Background(), nil); err != nil {
		t.Errorf("after cancel: %v", err)
	}
}

// inspector returns the MCP Inspector CLI, installed from npm once into a
// cache directory.
func inspector(t *testing.T) []string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is not installed: run PYRO_WITH_NODE=1 ./scripts/install-host-deps.sh (make test does)")
	}
	home, _ := os.UserHomeDir()
	dir := filepath.Join(home, ".cache", "pyro-e2e", "inspector-2.12.0")
	// The package's "mcp-inspector" bin (its launcher), run with node.
	cli := filepath.Join(dir, "node_modules", "@modelcontextprotocol", "inspector", "clients", "launcher", "build", "index.js")
	if _, err := os.Stat(cli); err != nil {
		must(t, os.MkdirAll(dir, 0o755))
		install := exec.Command("npm", "install", "--prefix", dir, "--no-audit", "--no-fund", "--loglevel=error", "@modelcontextprotocol/inspector@2.12.0")
		if out, err := install.CombinedOutput(); err != nil {
			t.Fatalf("npm install @modelcontextprotocol/inspector: %v\n%s", err, out)
		}
	}
	if _, err := os.Stat(cli); err != nil {
		t.Fatalf("inspector CLI not found at %s after npm install: %v", cli, err)
	}
	return []string{node, cli}
}

func runInspector(t *testing.T, env []string, args ...string) (string, int) {
	t.Helper()
	ins := inspector(t)
	cmd := exec.Command(ins[0], append(ins[1:], args...)...)
	// The inspector keeps state under $HOME; pyro's caches keep their
	// real place.
	cmd.Env = append(os.Environ(), append(env, "HOME="+t.TempDir(), "PYRO_ENV_CACHE="+envcache.DefaultCacheDir())...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if code != 0 {
		t.Logf("inspector %v: exit %d\n%s", args, code, errb.String())
	}
	return out.String(), code
}

func inspectorCycle(t *testing.T, target []string, env []string) {
	out, code := runInspector(t, env, append(target, "--method", "tools/list")...)
	if code != 0 || !strings.Contains(out, `"workspace_create"`) || !strings.Contains(out, `"vm_run"`) {
		t.Fatalf("tools/list: exit %d\n%.2000s", code, out)
	}
	out, code = runInspector(t, env, append(target, "--method", "tools/call", "--tool-name", "vm_run", "--tool-arg", "command=uname -s")...)
	if code != 0 || !strings.Contains(out, `Linux\n`) {
		t.Fatalf("vm_run: exit %d\n%s", code, out)
	}
	out, code = runInspector(t, env, append(target, "--method", "tools/call", "--tool-name", "workspace_create", "--tool-arg", "name=insp")...)
	if code != 0 || !strings.Contains(out, `\"state\": \"started\"`) && !strings.Contains(out, `"state": "started"`) {
		t.Fatalf("workspace_create: exit %d\n%s", code, out)
	}
	out, code = runInspector(t, env, append(target, "--method", "tools/call", "--tool-name", "workspace_exec", "--tool-arg", "workspace_id=insp", "command=echo inside-$((1+1))")...)
	if code != 0 || !strings.Contains(out, "inside-2") {
		t.Errorf("workspace_exec: exit %d\n%s", code, out)
	}
	out, code = runInspector(t, env, append(target, "--method", "tools/call", "--tool-name", "workspace_delete", "--tool-arg", "workspace_id=insp")...)
	if code != 0 || !strings.Contains(out, "deleted") {
		t.Errorf("workspace_delete: exit %d\n%s", code, out)
	}
	// A tool error is reported as one.
	_, code = runInspector(t, env, append(target, "--method", "tools/call", "--tool-name", "workspace_status", "--tool-arg", "workspace_id=nope")...)
	if code == 0 {
		t.Errorf("a tool error exited 0")
	}
}

func TestMCPInspectorStdio(t *testing.T) {
	// The inspector hands the server only a few variables of its own
	// environment; pyro's are passed with -e.
	target := []string{"--cli", "-e", "PYRO_HOME=" + t.TempDir(), "-e", "PYRO_ENV_CACHE=" + envcache.DefaultCacheDir(), pyroBin, "mcp", "serve"}
	inspectorCycle(t, target, nil)
	assertNoVMLeft(t)
}

func TestMCPInspectorHTTP(t *testing.T) {
	home := t.TempDir()
	port := 18931
	cmd, stderr := startPyro(t, []string{"PYRO_HOME=" + home, "PYRO_MCP_TOKEN=e2e-secret"}, "mcp", "serve", "--transport", "http", "--listen", fmt.Sprintf("127.0.0.1:%d", port))
	waitFor(t, stderr, "[mcp] url=", 20*time.Second)
	url := fmt.Sprintf("http://127.0.0.1:%d/mcp", port)
	// Without the token, and with a foreign Host header: refused.
	resp, err := http.Post(url, "application/json", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
	if err != nil || resp.StatusCode != 401 {
		t.Errorf("no token: %v %v", err, resp)
	}
	req, _ := http.NewRequest("POST", url, strings.NewReader(`{}`))
	req.Host = "evil.example"
	req.Header.Set("Authorization", "Bearer e2e-secret")
	resp, err = http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 403 {
		t.Errorf("foreign Host: %v %v", err, resp)
	}
	inspectorCycle(t, []string{"--cli", url, "--transport", "http", "--header", "Authorization: Bearer e2e-secret"}, nil)
	cmd.Process.Signal(os.Interrupt)
	cmd.Wait()
	assertNoVMLeft(t)
}
