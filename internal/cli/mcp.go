package cli

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/spf13/cobra"

	"github.com/pyro-sandbox/pyro/internal/contract"
	"github.com/pyro-sandbox/pyro/internal/errs"
	"github.com/pyro-sandbox/pyro/internal/progress"
	"github.com/pyro-sandbox/pyro/pyro"
)

// EnvMCPToken supplies the bearer token of the HTTP transport.
const EnvMCPToken = "PYRO_MCP_TOKEN"

// maxHTTPBody bounds an MCP request over HTTP: the tool argument bound
// plus room for the envelope.
const maxHTTPBody = 9 << 20

func (a *app) mcpCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "mcp",
		Short: "Serve pyro's tools over the Model Context Protocol",
	}
	cmd.AddCommand(a.mcpServeCommand())
	return cmd
}

func (a *app) mcpServeCommand() *cobra.Command {
	var profile, transport, listen string
	var roots []string
	var allowRemote bool
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the MCP server (stdio by default)",
		Long: `Serve runs pyro's MCP server. Profiles pick the tools: vm-run (vm_run only),
workspace-core (the default: one-shot runs and the workspace basics) and
workspace-full (everything built so far, including start and stop).

Host paths a client names (seed_path, source_path, output_path) must be under
the current directory or a --host-root.

With --transport http the server speaks MCP streamable HTTP on --listen
(127.0.0.1 only unless --allow-remote); every request needs the bearer token,
taken from $PYRO_MCP_TOKEN or generated and printed at start.`,
		Example: `  claude mcp add pyro -- pyro mcp serve
  pyro mcp serve --profile workspace-full --host-root ~/src
  PYRO_MCP_TOKEN=secret pyro mcp serve --transport http --listen 127.0.0.1:8931`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, ok := contract.ParseProfile(profile); !ok {
				return &exitError{code: exitUsage, err: errs.New(errs.Invalid, "use vm-run, workspace-core or workspace-full", "unknown profile %q", profile)}
			}
			server, err := a.sdk("mcp").CreateServer(pyro.MCPOptions{Profile: profile, HostRoots: roots})
			if err != nil {
				return &exitError{code: exitFailure, err: err}
			}
			switch transport {
			case "stdio":
				err = server.Run(cmd.Context(), &mcp.StdioTransport{})
				if err != nil && cmd.Context().Err() == nil {
					return &exitError{code: exitFailure, err: err}
				}
				return nil
			case "http":
				return a.serveHTTP(cmd.Context(), server, listen, allowRemote)
			}
			return &exitError{code: exitUsage, err: errs.New(errs.Invalid, "use stdio or http", "unknown transport %q", transport)}
		},
	}
	f := cmd.Flags()
	f.StringVar(&profile, "profile", string(contract.DefaultProfile), "vm-run, workspace-core or workspace-full")
	f.StringVar(&transport, "transport", "stdio", "stdio or http (streamable HTTP)")
	f.StringVar(&listen, "listen", "127.0.0.1:8931", "address of the HTTP transport")
	f.StringArrayVar(&roots, "host-root", nil, "host directory whose paths clients may name (repeat; default: the current directory)")
	f.BoolVar(&allowRemote, "allow-remote", false, "let the HTTP transport listen on a non-loopback address")
	return cmd
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (a *app) serveHTTP(ctx context.Context, server *mcp.Server, listen string, allowRemote bool) error {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return &exitError{code: exitUsage, err: errs.New(errs.Invalid, "use HOST:PORT, e.g. 127.0.0.1:8931", "invalid --listen %q", listen)}
	}
	if !isLoopback(host) && !allowRemote {
		return &exitError{code: exitUsage, err: errs.New(errs.Invalid, "listen on 127.0.0.1, or pass --allow-remote if you really mean it",
			"refusing to serve MCP on the non-loopback address %s", host)}
	}
	token := os.Getenv(EnvMCPToken)
	generated := token == ""
	if generated {
		var b [24]byte
		rand.Read(b[:])
		token = hex.EncodeToString(b[:])
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return &exitError{code: exitFailure, err: errs.Wrap(errs.Unavailable, err, "choose another --listen port", "listening on %s", listen)}
	}
	allowed := map[string]bool{"localhost": true, "127.0.0.1": true, "::1": true, host: true}
	handler := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, &mcp.StreamableHTTPOptions{
		SessionTimeout:               30 * time.Minute,
		MaxRequestBodyBytes:          maxHTTPBody,
		PropagateRequestCancellation: true,
		CrossOriginProtection:        http.NewCrossOriginProtection(),
	})
	mux := http.NewServeMux()
	mux.Handle("/mcp", guardHTTP(handler, token, allowed))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	kv := []string{"url", "http://" + ln.Addr().String() + "/mcp"}
	if generated {
		kv = append(kv, "token", token)
	} else {
		kv = append(kv, "token", "$"+EnvMCPToken)
	}
	fmt.Fprintln(a.stderr, progress.FormatLine("mcp", kv...))
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return &exitError{code: exitFailure, err: err}
	}
	return nil
}

// guardHTTP refuses requests whose Host header is not one of the allowed
// names (DNS rebinding) and requests without the bearer token.
func guardHTTP(next http.Handler, token string, allowed map[string]bool) http.Handler {
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		host = strings.Trim(host, "[]")
		if !allowed[host] {
			http.Error(w, "forbidden: unexpected Host header", http.StatusForbidden)
			return
		}
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="pyro"`)
			http.Error(w, "unauthorized: send Authorization: Bearer <token>", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}
