package accel

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pyro-sandbox/pyro/internal/host"
	"github.com/pyro-sandbox/pyro/internal/vmm"
)

func TestChoose(t *testing.T) {
	usable := host.KVM{Exists: true, Readable: true, Writable: true, CreateVM: true}
	nested := usable
	nested.Nested = "pvm"
	for _, tc := range []struct {
		name      string
		override  string
		kvm       host.KVM
		probe     *Probe
		want      vmm.Accelerator
		needProbe bool
		wantErr   string   // substring of the error; "" for none
		reason    []string // substrings of the reason
		notReason []string
	}{
		{name: "override tcg with usable kvm", override: "tcg", kvm: usable, want: vmm.TCG, reason: []string{"PYRO_ACCEL=tcg"}},
		{name: "override tcg without kvm", override: "tcg", want: vmm.TCG, reason: []string{"PYRO_ACCEL=tcg"}},
		{name: "override tcg ignores a failed probe", override: "tcg", kvm: usable, probe: &Probe{OK: false}, want: vmm.TCG},
		{name: "override kvm usable", override: "kvm", kvm: usable, want: vmm.KVM, reason: []string{"PYRO_ACCEL=kvm"}},
		{name: "override kvm skips the probe", override: "kvm", kvm: nested, probe: &Probe{OK: false}, want: vmm.KVM},
		{name: "override kvm missing", override: "kvm", kvm: host.KVM{}, wantErr: "/dev/kvm does not exist"},
		{name: "override kvm not writable", override: "kvm", kvm: host.KVM{Exists: true, Readable: true}, wantErr: "not readable and writable"},
		{name: "override kvm create fails", override: "kvm", kvm: host.KVM{Exists: true, Readable: true, Writable: true, Error: "KVM_CREATE_VM failed: ENOMEM"}, wantErr: "ENOMEM"},
		{name: "override bogus", override: "hvf", kvm: usable, wantErr: `PYRO_ACCEL="hvf": want kvm or tcg`},
		{name: "override wrong case", override: "KVM", kvm: usable, wantErr: "want kvm or tcg"},
		{name: "kvm missing", kvm: host.KVM{Error: "/dev/kvm does not exist"}, want: vmm.TCG, reason: []string{"/dev/kvm does not exist"}},
		{name: "kvm not readable", kvm: host.KVM{Exists: true, Writable: true, CreateVM: true}, want: vmm.TCG, reason: []string{"not readable and writable"}},
		{name: "kvm not writable", kvm: host.KVM{Exists: true, Readable: true, CreateVM: true}, want: vmm.TCG, reason: []string{"not readable and writable"}},
		{name: "kvm create vm false with error", kvm: host.KVM{Exists: true, Readable: true, Writable: true, Error: "KVM_CREATE_VM failed: EPERM"}, want: vmm.TCG, reason: []string{"KVM_CREATE_VM failed: EPERM"}},
		{name: "kvm create vm false without error", kvm: host.KVM{Exists: true, Readable: true, Writable: true}, want: vmm.TCG, reason: []string{"KVM_CREATE_VM failed"}},
		{name: "unusable kvm ignores an ok probe", kvm: host.KVM{Exists: true}, probe: &Probe{OK: true, Millis: 300}, want: vmm.TCG},
		{name: "not probed", kvm: usable, want: vmm.TCG, needProbe: true, reason: []string{"not probed"}},
		{name: "failed probe", kvm: usable, probe: &Probe{OK: false, Millis: 5000}, want: vmm.TCG,
			reason: []string{"too slow", ProbeDeadline.String()}, notReason: []string{"nested"}},
		{name: "failed probe nested", kvm: nested, probe: &Probe{OK: false, Detail: "no hello within 5s"}, want: vmm.TCG,
			reason: []string{"too slow", "nested pvm hypervisor", "no hello within 5s"}},
		{name: "ok probe", kvm: usable, probe: &Probe{OK: true, Millis: 412}, want: vmm.KVM, reason: []string{"412 ms"}},
		{name: "ok probe nested", kvm: nested, probe: &Probe{OK: true, Millis: 900}, want: vmm.KVM, reason: []string{"900 ms"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Choose(tc.override, tc.kvm, tc.probe)
			if tc.wantErr != "" {
				if err == nil {
					t.Fatalf("Choose = %+v, want an error containing %q", d, tc.wantErr)
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %q does not contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Choose: %v", err)
			}
			if d.Accel != tc.want || d.NeedProbe != tc.needProbe {
				t.Errorf("Choose = {%s NeedProbe:%v}, want {%s NeedProbe:%v}", d.Accel, d.NeedProbe, tc.want, tc.needProbe)
			}
			if d.Reason == "" {
				t.Error("empty reason")
			}
			for _, s := range tc.reason {
				if !strings.Contains(d.Reason, s) {
					t.Errorf("reason %q does not mention %q", d.Reason, s)
				}
			}
			for _, s := range tc.notReason {
				if strings.Contains(d.Reason, s) {
					t.Errorf("reason %q mentions %q", d.Reason, s)
				}
			}
		})
	}
}

func TestStoreRoundTrip(t *testing.T) {
	s := Store{Path: filepath.Join(t.TempDir(), "state", "accel-probe.json")}
	if p := s.Load("boot1/kernel/qemu"); p != nil {
		t.Fatalf("Load before Save = %+v, want nil", p)
	}
	want := Probe{Key: "boot1/kernel/qemu", OK: true, Millis: 321, Detail: "fine"}
	if err := s.Save(want); err != nil {
		t.Fatal(err)
	}
	got := s.Load(want.Key)
	if got == nil || *got != want {
		t.Fatalf("Load = %+v, want %+v", got, want)
	}
	if p := s.Load("boot2/kernel/qemu"); p != nil {
		t.Errorf("Load with another key = %+v, want nil", p)
	}
	if p := s.Load(""); p != nil {
		t.Errorf("Load with an empty key = %+v, want nil", p)
	}

	// A second verdict replaces the first.
	next := Probe{Key: "boot2/kernel/qemu", OK: false, Millis: 5000}
	if err := s.Save(next); err != nil {
		t.Fatal(err)
	}
	if p := s.Load(want.Key); p != nil {
		t.Errorf("Load of the replaced key = %+v, want nil", p)
	}
	if got := s.Load(next.Key); got == nil || *got != next {
		t.Errorf("Load = %+v, want %+v", got, next)
	}
	entries, err := os.ReadDir(filepath.Dir(s.Path))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("state directory holds %d entries, want only the probe file", len(entries))
	}
}

func TestStoreLoadDamaged(t *testing.T) {
	s := Store{Path: filepath.Join(t.TempDir(), "accel-probe.json")}
	for _, content := range []string{"", "{", "null", `{"key":1}`, `{"key":"other","ok":true}`, "not json"} {
		if err := os.WriteFile(s.Path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if p := s.Load("k"); p != nil {
			t.Errorf("Load(k) of %q = %+v, want nil", content, p)
		}
	}
}
