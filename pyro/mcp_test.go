package pyro

import (
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/pyro-sandbox/pyro/internal/contract"
)

var update = flag.Bool("update", false, "rewrite golden files")

// connect serves a profile on in-memory transports and returns a client
// session.
func connect(t *testing.T, profile string, roots ...string) *mcp.ClientSession {
	t.Helper()
	c := New(Options{CacheDir: t.TempDir(), StateDir: t.TempDir()})
	server, err := c.CreateServer(MCPOptions{Profile: profile, HostRoots: roots})
	if err != nil {
		t.Fatal(err)
	}
	st, ct := mcp.NewInMemoryTransports()
	ctx := context.Background()
	ss, err := server.Connect(ctx, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "v0"}, nil).Connect(ctx, ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cs.Close()
		ss.Wait()
	})
	return cs
}

// TestMCPProfilesGolden pins every profile's tools, annotations and input
// schemas. A change to testdata/mcp-profiles.golden.json is a change of
// the public contract: review it as one (go test ./pyro -run Golden -update).
func TestMCPProfilesGolden(t *testing.T) {
	type toolView struct {
		Name        string               `json:"name"`
		Title       string               `json:"title"`
		Annotations *mcp.ToolAnnotations `json:"annotations"`
		InputSchema any                  `json:"input_schema"`
		Description string               `json:"description"`
	}
	got := map[string][]toolView{}
	for _, p := range contract.Profiles {
		cs := connect(t, string(p))
		res, err := cs.ListTools(context.Background(), nil)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, tool := range res.Tools {
			got[string(p)] = append(got[string(p)], toolView{tool.Name, tool.Title, tool.Annotations, tool.InputSchema, tool.Description})
			names = append(names, tool.Name)
		}
		var want []string
		for _, op := range contract.Tools(p) {
			want = append(want, op.Tool)
		}
		sort.Strings(names)
		sort.Strings(want)
		if strings.Join(names, ",") != strings.Join(want, ",") {
			t.Errorf("profile %s serves %v, the contract table says %v", p, names, want)
		}
	}
	data, err := json.MarshalIndent(got, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "mcp-profiles.golden.json")
	if *update {
		if err := os.WriteFile(golden, append(data, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./pyro -run Golden -update to create it)", err)
	}
	if string(want) != string(data)+"\n" {
		t.Errorf("the MCP tools differ from %s; if the change is meant, rerun with -update and review the diff as a contract change", golden)
	}
}

// TestMCPPendingTools says which contract tools are not built yet. It must
// change when one lands.
func TestMCPPendingTools(t *testing.T) {
	var pending []string
	for _, op := range contract.Operations {
		if op.Pending {
			pending = append(pending, op.Tool)
		}
	}
	want := "snapshot_create snapshot_list snapshot_delete shell_open shell_read shell_write shell_signal shell_close " +
		"service_start service_list service_status service_logs service_stop workspace_disk_list workspace_disk_read " +
		"workspace_disk_export vm_create vm_start vm_exec vm_stop vm_delete vm_status vm_network_info vm_list_environments vm_reap_expired"
	if got := strings.Join(pending, " "); got != want {
		t.Errorf("pending tools:\n got %s\nwant %s", got, want)
	}
	t.Logf("pending (absent from every profile until built): %s; pending parameters: %v", want, contract.PendingParameters)
	// Every built tool has a handler, and every handler a contract entry.
	reg := (&mcpTools{}).registry()
	for _, op := range contract.Operations {
		if _, ok := reg[op.Tool]; ok == op.Pending {
			t.Errorf("tool %s: pending=%v but handler present=%v", op.Tool, op.Pending, ok)
		}
	}
	for name := range reg {
		if _, ok := contract.Lookup(name); !ok {
			t.Errorf("handler %s is not in the contract table", name)
		}
	}
}

func callText(res *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

func TestMCPBadInput(t *testing.T) {
	root := t.TempDir()
	cs := connect(t, "workspace-core", root)
	ctx := context.Background()
	// An unknown tool is a protocol error.
	if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "no_such_tool", Arguments: map[string]any{}}); err == nil || !strings.Contains(err.Error(), "unknown tool") {
		t.Errorf("unknown tool: %v", err)
	}
	for _, tc := range []struct {
		name string
		tool string
		args map[string]any
		want string
	}{
		{"missing argument", "workspace_exec", map[string]any{"workspace_id": "x"}, "missing properties"},
		{"extra argument", "workspace_status", map[string]any{"workspace_id": "x", "bogus": 1}, "unexpected additional properties"},
		{"wrong type", "vm_run", map[string]any{"command": 42}, "want \"string\""},
		{"out of range", "vm_run", map[string]any{"command": "true", "mem_mib": 1}, "minimum"},
		{"huge argument", "workspace_file_write", map[string]any{"workspace_id": "x", "path": "a", "text": strings.Repeat("a", 9<<20)}, "over the 8388608-byte limit"},
		{"text over limit", "workspace_file_write", map[string]any{"workspace_id": "x", "path": "a", "text": strings.Repeat("a", 2<<20)}, "argument text is 2097152 bytes, over the 1048576-byte limit"},
		{"unknown workspace", "workspace_status", map[string]any{"workspace_id": "nope"}, `no workspace named "nope"`},
		{"seed outside the roots", "workspace_create", map[string]any{"seed_path": "/etc"}, "outside the host directories"},
		{"export outside the roots", "workspace_export", map[string]any{"workspace_id": "x", "path": "a", "output_path": "/tmp/../etc/x"}, "outside the host directories"},
		{"empty command", "vm_run", map[string]any{"command": "  "}, "empty command"},
		{"unknown environment", "vm_run", map[string]any{"command": "true", "environment": "debian:99"}, "unknown environment"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: tc.tool, Arguments: tc.args})
			if err != nil {
				t.Fatalf("protocol error %v, want a tool error", err)
			}
			text := callText(res)
			if !res.IsError || !strings.Contains(text, tc.want) {
				t.Errorf("IsError=%v text %.300q, want %q", res.IsError, text, tc.want)
			}
			if len(text) > 64<<10 {
				t.Errorf("the error echoes %d bytes back", len(text))
			}
		})
	}
	// The server still serves after all that.
	if _, err := cs.ListTools(ctx, nil); err != nil {
		t.Errorf("list after bad calls: %v", err)
	}
	// Errors carry the hint, like the CLI.
	res, _ := cs.CallTool(ctx, &mcp.CallToolParams{Name: "vm_run", Arguments: map[string]any{"command": "true"}})
	if text := callText(res); !res.IsError || !strings.Contains(text, "hint: run 'pyro env pull debian:12'") {
		t.Errorf("vm_run without the environment: %q", text)
	}
}

func TestHostPathConfinement(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	os.Symlink(outside, filepath.Join(root, "escape"))
	tools := &mcpTools{roots: mustRoots(t, root)}
	for _, tc := range []struct {
		path string
		ok   bool
	}{
		{root, true},
		{filepath.Join(root, "a/b/new"), true},
		{filepath.Join(root, "escape"), false},
		{filepath.Join(root, "escape/new-file"), false},
		{filepath.Join(root, "../x"), false},
		{outside, false},
		{"/", false},
	} {
		_, err := tools.hostPath("output_path", tc.path)
		if (err == nil) != tc.ok {
			t.Errorf("%s: err %v, want ok=%v", tc.path, err, tc.ok)
		}
	}
}

func mustRoots(t *testing.T, in ...string) []string {
	r, err := hostRoots(in)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
