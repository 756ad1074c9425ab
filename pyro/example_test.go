package pyro_test

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/pyro-sandbox/pyro/pyro"
)

// Run one command in a fresh VM. Needs QEMU and an installed debian:12
// (pyro env pull debian:12).
func ExampleClient_Run() {
	c := pyro.New(pyro.Options{})
	res, err := c.Run(context.Background(), pyro.RunRequest{
		Environment: "debian:12",
		Command:     []string{"git", "--version"},
	})
	if err != nil {
		fmt.Println(pyro.HintOf(err))
		return
	}
	fmt.Print(res.Stdout, res.ExitCode)
}

// A workspace over several calls: create it seeded from a directory, run a
// command, edit a file, look at the diff, delete it.
func ExampleClient_CreateWorkspace() {
	ctx := context.Background()
	c := pyro.New(pyro.Options{})
	ws, err := c.CreateWorkspace(ctx, pyro.WorkspaceCreateRequest{Environment: "debian:12", SeedPath: "./repo", Name: "fix-123"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.DeleteWorkspace(ctx, pyro.DeleteRequest{Workspace: ws.WorkspaceID})
	c.ExecWorkspace(ctx, pyro.WorkspaceExecRequest{Workspace: "fix-123", Command: []string{"make", "test"}})
	c.WriteFile(ctx, pyro.FileWriteRequest{Workspace: "fix-123", Path: "NOTES.md", Text: "fixed\n"})
	d, _ := c.DiffWorkspace(ctx, "fix-123")
	fmt.Print(d.Patch)
}

// Serve pyro's MCP tools over stdio from a Go program.
func ExampleClient_CreateServer() {
	c := pyro.New(pyro.Options{})
	server, err := c.CreateServer(pyro.MCPOptions{Profile: "workspace-core"})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := server.Run(context.Background(), &mcp.StdioTransport{}); err != nil {
		fmt.Println(err)
	}
}

// The catalog is known without any host setup.
func ExampleClient_ListEnvironments() {
	dir, _ := os.MkdirTemp("", "pyro-example-")
	defer os.RemoveAll(dir)
	c := pyro.New(pyro.Options{CacheDir: dir, StateDir: dir})
	list, _ := c.ListEnvironments(context.Background())
	for _, e := range list.Environments {
		fmt.Println(e.Name, e.Installed)
	}
	// Output:
	// debian:12 false
	// debian:12-base false
	// debian:12-build false
}

// Errors carry a kind and a hint that says what to do next.
func ExampleKindOf() {
	dir, _ := os.MkdirTemp("", "pyro-example-")
	defer os.RemoveAll(dir)
	c := pyro.New(pyro.Options{CacheDir: dir, StateDir: dir})
	_, err := c.Run(context.Background(), pyro.RunRequest{Environment: "debian:12", Command: []string{"true"}})
	var perr *pyro.Error
	fmt.Println(errors.As(err, &perr), pyro.KindOf(err) == pyro.ErrNotFound)
	fmt.Println(pyro.HintOf(err))
	// Output:
	// true true
	// run 'pyro env pull debian:12'
}
