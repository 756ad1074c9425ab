package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pyro-sandbox/pyro/internal/contract"
	"github.com/pyro-sandbox/pyro/internal/errs"
)

func (a *app) hostCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "host", Short: "Connect chat hosts to pyro"}
	cmd.AddCommand(a.printConfigCommand())
	return cmd
}

// HostConfigs are the chat hosts print-config knows.
var HostConfigs = []string{"claude-code", "codex", "cursor", "opencode"}

func (a *app) printConfigCommand() *cobra.Command {
	var profile string
	var absolute bool
	cmd := &cobra.Command{
		Use:   "print-config claude-code|codex|cursor|opencode",
		Short: "Print a ready MCP configuration for a chat host",
		Long: `Print-config prints the MCP server configuration of a chat host:
  claude-code  .mcp.json of a project (or: claude mcp add pyro -- pyro mcp serve)
  codex        ~/.codex/config.toml
  cursor       .cursor/mcp.json or ~/.cursor/mcp.json
  opencode     opencode.json`,
		Example: "  pyro host print-config claude-code > .mcp.json\n  pyro host print-config codex >> ~/.codex/config.toml",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, ok := contract.ParseProfile(profile); !ok {
				return &exitError{code: exitUsage, err: errs.New(errs.Invalid, "use vm-run, workspace-core or workspace-full", "unknown profile %q", profile)}
			}
			command := "pyro"
			if absolute {
				if p, err := os.Executable(); err == nil {
					command = p
				}
			}
			text, err := hostConfig(args[0], command, []string{"mcp", "serve", "--profile", profile})
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			fmt.Fprint(a.stdout, text)
			return nil
		},
	}
	cmd.Flags().StringVar(&profile, "profile", string(contract.DefaultProfile), "vm-run, workspace-core or workspace-full")
	cmd.Flags().BoolVar(&absolute, "absolute", false, "name this pyro binary by its absolute path rather than \"pyro\" from PATH")
	return cmd
}

// hostConfig renders the configuration of a chat host.
func hostConfig(hostName, command string, args []string) (string, error) {
	jsonText := func(v any) string {
		b, _ := json.MarshalIndent(v, "", "  ")
		return string(b) + "\n"
	}
	switch hostName {
	case "claude-code", "cursor":
		return jsonText(map[string]any{"mcpServers": map[string]any{"pyro": map[string]any{"command": command, "args": args}}}), nil
	case "codex":
		quoted := make([]string, len(args))
		for i, s := range args {
			quoted[i] = fmt.Sprintf("%q", s)
		}
		return fmt.Sprintf("[mcp_servers.pyro]\ncommand = %q\nargs = [%s]\n", command, strings.Join(quoted, ", ")), nil
	case "opencode":
		return jsonText(map[string]any{
			"$schema": "https://opencode.ai/config.json",
			"mcp": map[string]any{"pyro": map[string]any{
				"type": "local", "command": append([]string{command}, args...), "enabled": true,
			}},
		}), nil
	}
	return "", errs.New(errs.Invalid, "use one of "+strings.Join(HostConfigs, ", "), "unknown chat host %q", hostName)
}
