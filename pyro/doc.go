// Package pyro is the Go SDK of pyro: disposable Linux machines for coding
// agents and developers, as microVMs on the user's own Linux host.
//
// A Client runs one-shot commands in fresh VMs and manages the environments
// (root filesystems with a kernel) they boot from. Every method takes a
// context first and returns a typed result whose JSON encoding is the
// payload the CLI prints with --json and the MCP server returns.
//
//	c := pyro.New(pyro.Options{})
//	res, err := c.Run(ctx, pyro.RunRequest{
//		Environment: "debian:12",
//		Command:     []string{"git", "--version"},
//	})
//	if err != nil {
//		return err
//	}
//	fmt.Print(res.Stdout) // git version 2.39.5
//
// Errors are *Error values with a Kind (see the Err* constants) and a Hint
// that says what to do next.
package pyro
