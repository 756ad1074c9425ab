package pyro

import (
	"runtime"
	"strings"
	"testing"

	"github.com/pyro-sandbox/pyro/internal/env"
)

func TestNormalizeDefaults(t *testing.T) {
	r := RunRequest{Command: []string{"true"}}
	if err := r.normalize(); err != nil {
		t.Fatal(err)
	}
	if r.Environment != env.DefaultName || r.VCPUCount != DefaultVCPUCount || r.MemMiB != DefaultMemMiB ||
		r.TimeoutSeconds != DefaultTimeoutSeconds || r.TTLSeconds != DefaultTTLSeconds {
		t.Errorf("normalize = %+v, want the defaults", r)
	}
	// Values given are kept.
	r = RunRequest{Environment: "debian:12-base", Command: []string{"true"}, VCPUCount: 1, MemMiB: 512, TimeoutSeconds: 5, TTLSeconds: 60}
	want := r
	if err := r.normalize(); err != nil {
		t.Fatal(err)
	}
	if r.Environment != want.Environment || r.VCPUCount != 1 || r.MemMiB != 512 || r.TimeoutSeconds != 5 || r.TTLSeconds != 60 {
		t.Errorf("normalize changed given values: %+v", r)
	}
	// The defaults themselves are valid.
	d := RunRequest{Command: []string{"true"}, VCPUCount: DefaultVCPUCount, MemMiB: DefaultMemMiB, TimeoutSeconds: DefaultTimeoutSeconds, TTLSeconds: DefaultTTLSeconds}
	if err := d.Validate(); err != nil {
		t.Errorf("the defaults are refused: %v", err)
	}
}

func TestNormalizeRefusesEmptyCommand(t *testing.T) {
	for _, cmd := range [][]string{nil, {}, {""}, {"", "x"}} {
		r := RunRequest{Environment: "debian:12", Command: cmd}
		err := r.normalize()
		if KindOf(err) != ErrInvalid {
			t.Errorf("command %q: %v (kind %s), want invalid_argument", cmd, err, KindOf(err))
		}
		if !strings.Contains(HintOf(err), "--") {
			t.Errorf("command %q: hint %q", cmd, HintOf(err))
		}
	}
}

func TestValidate(t *testing.T) {
	valid := RunRequest{Command: []string{"true"}, VCPUCount: 1, MemMiB: 1024, TimeoutSeconds: 30, TTLSeconds: 600}
	maxV := min(MaxVCPUs, runtime.NumCPU())
	for _, tc := range []struct {
		name   string
		mutate func(*RunRequest)
		ok     bool
		hint   string
	}{
		{"valid", func(*RunRequest) {}, true, ""},
		{"smallest", func(r *RunRequest) { r.MemMiB, r.TimeoutSeconds, r.TTLSeconds = MinMemMiB, 1, 1 }, true, ""},
		{"largest", func(r *RunRequest) {
			r.VCPUCount, r.MemMiB, r.TimeoutSeconds, r.TTLSeconds = maxV, MaxMemMiB, 86400, 604800
		}, true, ""},
		{"zero vcpus", func(r *RunRequest) { r.VCPUCount = 0 }, false, "--vcpu-count"},
		{"negative vcpus", func(r *RunRequest) { r.VCPUCount = -1 }, false, "--vcpu-count"},
		{"more vcpus than the host", func(r *RunRequest) { r.VCPUCount = runtime.NumCPU() + 1 }, false, "--vcpu-count"},
		{"huge vcpus", func(r *RunRequest) { r.VCPUCount = 1 << 30 }, false, "--vcpu-count"},
		{"zero memory", func(r *RunRequest) { r.MemMiB = 0 }, false, "--mem-mib"},
		{"tiny memory", func(r *RunRequest) { r.MemMiB = MinMemMiB - 1 }, false, "--mem-mib"},
		{"huge memory", func(r *RunRequest) { r.MemMiB = MaxMemMiB + 1 }, false, "--mem-mib"},
		{"absurd memory", func(r *RunRequest) { r.MemMiB = 1 << 40 }, false, "--mem-mib"},
		{"zero timeout", func(r *RunRequest) { r.TimeoutSeconds = 0 }, false, "--timeout-seconds"},
		{"negative timeout", func(r *RunRequest) { r.TimeoutSeconds = -1 }, false, "--timeout-seconds"},
		{"timeout over a day", func(r *RunRequest) { r.TimeoutSeconds = 86401 }, false, "--timeout-seconds"},
		{"zero ttl", func(r *RunRequest) { r.TTLSeconds = 0 }, false, "--ttl-seconds"},
		{"ttl over a week", func(r *RunRequest) { r.TTLSeconds = 604801 }, false, "--ttl-seconds"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := valid
			tc.mutate(&r)
			err := r.Validate()
			if tc.ok {
				if err != nil {
					t.Errorf("Validate: %v", err)
				}
				return
			}
			if KindOf(err) != ErrInvalid {
				t.Fatalf("Validate = %v (kind %s), want invalid_argument", err, KindOf(err))
			}
			if !strings.Contains(HintOf(err), tc.hint) {
				t.Errorf("hint %q does not name %s", HintOf(err), tc.hint)
			}
			// normalize reads a zero as the default and keeps anything
			// else, which it then refuses too.
			err = r.normalize()
			if zero := strings.HasPrefix(tc.name, "zero"); zero && err != nil {
				t.Errorf("normalize did not take the default for a zero: %v", err)
			} else if !zero && KindOf(err) != ErrInvalid {
				t.Errorf("normalize = %v, want invalid_argument", err)
			}
		})
	}
}
