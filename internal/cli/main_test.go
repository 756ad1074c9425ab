package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// isolate points every directory pyro uses at a fresh temporary one.
func isolate(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("PYRO_ENV_CACHE", dir+"/cache")
	t.Setenv("PYRO_HOME", dir+"/home")
	t.Setenv("XDG_CACHE_HOME", dir+"/xdg-cache")
	t.Setenv("XDG_DATA_HOME", dir+"/xdg-data")
	t.Setenv("PYRO_ACCEL", "")
}

func runMain(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = Main(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestMainUsageErrors(t *testing.T) {
	isolate(t)
	for _, tc := range []struct {
		name   string
		args   []string
		stderr []string // substrings
	}{
		{"run without arguments", []string{"run"}, []string{"name an environment"}},
		{"run without --", []string{"run", "debian:12", "true"}, []string{"put the command after --", "pyro run debian:12 -- COMMAND"}},
		{"run with two environments", []string{"run", "debian:12", "debian:12-base", "--", "true"}, []string{"exactly one environment"}},
		{"run with no environment before --", []string{"run", "--", "true"}, []string{"exactly one environment"}},
		{"run with an unknown flag", []string{"run", "debian:12", "--cpus", "2", "--", "true"}, []string{"unknown flag: --cpus"}},
		{"run with a malformed number", []string{"run", "debian:12", "--mem-mib", "lots", "--", "true"}, []string{"--mem-mib"}},
		{"unknown top-level flag", []string{"--bogus"}, []string{"unknown flag: --bogus"}},
		{"unknown command", []string{"frobnicate"}, []string{"unknown command"}},
		{"env inspect without a name", []string{"env", "inspect"}, []string{"accepts 1 arg"}},
		{"env list with an argument", []string{"env", "list", "extra"}, []string{"unknown command"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runMain(t, tc.args...)
			if code != exitUsage {
				t.Errorf("exit %d, want %d; stderr %q", code, exitUsage, stderr)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
			for _, s := range tc.stderr {
				if !strings.Contains(stderr, s) {
					t.Errorf("stderr %q does not contain %q", stderr, s)
				}
			}
			if !strings.HasPrefix(stderr, "pyro: ") || !strings.Contains(stderr, "hint: ") {
				t.Errorf("stderr %q is not 'pyro: ...' with a hint", stderr)
			}
		})
	}
}

func TestMainRunRefusesSizes(t *testing.T) {
	isolate(t)
	for _, tc := range []struct {
		flag, value, hint string
	}{
		{"--mem-mib", "0", "--mem-mib"},
		{"--mem-mib", "64", "--mem-mib"},
		{"--mem-mib", "99999999", "--mem-mib"},
		{"--vcpu-count", "0", "--vcpu-count"},
		{"--vcpu-count", "1000", "--vcpu-count"},
		{"--timeout-seconds", "0", "--timeout-seconds"},
		{"--timeout-seconds", "-5", "--timeout-seconds"},
		{"--ttl-seconds", "0", "--ttl-seconds"},
	} {
		t.Run(tc.flag+"="+tc.value, func(t *testing.T) {
			args := []string{"run", "debian:12", tc.flag, tc.value, "--", "true"}
			code, stdout, stderr := runMain(t, args...)
			if code != exitUsage {
				t.Errorf("exit %d, want %d", code, exitUsage)
			}
			if stdout != "" || !strings.Contains(stderr, "hint: use "+tc.hint) {
				t.Errorf("stdout %q, stderr %q", stdout, stderr)
			}

			code, stdout, stderr = runMain(t, append(args[:len(args)-2:len(args)-2], "--json", "--", "true")...)
			if code != exitUsage {
				t.Errorf("--json: exit %d, want %d", code, exitUsage)
			}
			if stderr != "" {
				t.Errorf("--json: stderr %q", stderr)
			}
			var p ErrorPayload
			dec := json.NewDecoder(strings.NewReader(stdout))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&p); err != nil {
				t.Fatalf("--json: stdout %q: %v", stdout, err)
			}
			if p.Error.Code != "invalid_argument" || p.Error.Message == "" || !strings.Contains(p.Error.Hint, tc.hint) {
				t.Errorf("--json: error %+v", p.Error)
			}
		})
	}
}

func TestMainEnvironmentErrors(t *testing.T) {
	isolate(t)
	code, stdout, stderr := runMain(t, "env", "inspect", "no-such-env", "--json")
	if code != exitFailure || stderr != "" {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
	var p map[string]map[string]string
	if err := json.Unmarshal([]byte(stdout), &p); err != nil {
		t.Fatalf("stdout %q: %v", stdout, err)
	}
	if p["error"]["code"] != "not_found" || p["error"]["hint"] == "" {
		t.Errorf("error payload %v", p)
	}

	// A malformed name is a failure of the command (1); exit 2 is kept for
	// command lines cobra itself refuses.
	code, _, stderr = runMain(t, "env", "inspect", "bad name")
	if code != exitFailure || !strings.Contains(stderr, "malformed environment name") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
	// A run of a catalog environment that is not installed says how to get it.
	code, _, stderr = runMain(t, "run", "debian:12", "--", "true")
	if code != exitPyroFailed || !strings.Contains(stderr, "pyro env pull debian:12") {
		t.Errorf("run of a missing environment: exit %d, stderr %q", code, stderr)
	}
}

func TestMainEnvList(t *testing.T) {
	isolate(t)
	code, stdout, stderr := runMain(t, "env", "list", "--json")
	if code != exitOK {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	var list struct {
		CatalogVersion string `json:"catalog_version"`
		Environments   []struct {
			Name      string `json:"name"`
			Installed bool   `json:"installed"`
			State     string `json:"state"`
		} `json:"environments"`
	}
	if err := json.Unmarshal([]byte(stdout), &list); err != nil {
		t.Fatalf("stdout %q: %v", stdout, err)
	}
	if list.CatalogVersion == "" || len(list.Environments) == 0 {
		t.Errorf("list %+v", list)
	}
	for _, e := range list.Environments {
		if e.Installed || e.State != "cold" {
			t.Errorf("%s is %s in an empty cache", e.Name, e.State)
		}
	}
	// The same value in sorted form.
	var again bytes.Buffer
	var generic any
	json.Unmarshal([]byte(stdout), &generic)
	writeJSON(&again, generic)
	if again.String() != stdout {
		t.Errorf("env list --json is not in canonical form:\n%s", stdout)
	}

	code, stdout, _ = runMain(t, "env", "list")
	if code != exitOK || !strings.Contains(stdout, "debian:12 [not installed]") {
		t.Errorf("exit %d, stdout %q", code, stdout)
	}
}

func TestMainHelpAndVersion(t *testing.T) {
	isolate(t)
	code, stdout, _ := runMain(t, "--help")
	if code != exitOK || !strings.Contains(stdout, "pyro run") {
		t.Errorf("--help: exit %d, stdout %q", code, stdout)
	}
	code, stdout, _ = runMain(t, "--version")
	if code != exitOK || !strings.HasPrefix(stdout, "pyro version ") {
		t.Errorf("--version: exit %d, stdout %q", code, stdout)
	}
	code, stdout, _ = runMain(t, "run", "--help")
	if code != exitOK || !strings.Contains(stdout, "--timeout-seconds") {
		t.Errorf("run --help: exit %d, stdout %q", code, stdout)
	}
}
