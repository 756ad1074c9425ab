package supervisor

import (
	"fmt"
	"testing"
)

// The keep-or-clean rules, one row each. A pattern gives the six
// observations in the order
//
//	Expired  HaveBootstrap  SupervisorAlive  Answers  VMMAlive  RecordedRunning
//
// as T (true), F (false) or _ (either). The rows are disjoint and together
// cover all 64 observations, so each observation is decided by exactly one
// rule and the order of the rows does not matter.
var decideRules = []struct {
	rule    string
	pattern string
	want    Action
}{
	{"an expired workspace is deleted, whatever runs", "T _ _ _ _ _", Delete},
	{"a live supervisor that answers is used", "F T T T _ _", Use},
	{"a live supervisor that is silent gets a short wait", "F T T F _ _", Wait},
	{"a bootstrap whose supervisor is dead is cleaned up", "F T F _ _ _", CleanUp},
	{"a VMM left without a bootstrap is cleaned up", "F F _ _ T _", CleanUp},
	{"a record saying running with nothing left is cleaned up", "F F _ _ F T", CleanUp},
	{"nothing runs and the record agrees: stopped", "F F _ _ F F", Stopped},
}

func TestDecideRules(t *testing.T) {
	for bits := range 64 {
		o := observationOf(bits)
		var matched []int
		for i, r := range decideRules {
			if matches(t, r.pattern, o) {
				matched = append(matched, i)
			}
		}
		if len(matched) != 1 {
			t.Fatalf("%s matches rules %v; the table must decide every observation exactly once", show(o), matched)
		}
		r := decideRules[matched[0]]
		if got := Decide(o); got != r.want {
			t.Errorf("Decide(%s) = %v, want %v (%s)", show(o), got, r.want, r.rule)
		}
	}
}

// The situations a client meets, by name.
func TestDecideSituations(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Observation
		want Action
	}{
		{"running and healthy", Observation{RecordedRunning: true, HaveBootstrap: true, SupervisorAlive: true, Answers: true, VMMAlive: true}, Use},
		{"still booting: supervisor recorded, VMM not yet", Observation{RecordedRunning: true, HaveBootstrap: true, SupervisorAlive: true}, Wait},
		{"busy or hung supervisor", Observation{RecordedRunning: true, HaveBootstrap: true, SupervisorAlive: true, VMMAlive: true}, Wait},
		{"supervisor killed, VMM survived", Observation{RecordedRunning: true, HaveBootstrap: true, VMMAlive: true}, CleanUp},
		{"supervisor and VMM gone, bootstrap left", Observation{RecordedRunning: true, HaveBootstrap: true}, CleanUp},
		{"host rebooted: bootstrap of another boot", Observation{RecordedRunning: true, HaveBootstrap: true}, CleanUp},
		{"supervisor died before writing its bootstrap", Observation{RecordedRunning: true}, CleanUp},
		{"stopped cleanly", Observation{}, Stopped},
		{"expired while running", Observation{RecordedRunning: true, HaveBootstrap: true, SupervisorAlive: true, Answers: true, VMMAlive: true, Expired: true}, Delete},
		{"expired while stopped", Observation{Expired: true}, Delete},
	} {
		if got := Decide(tc.o); got != tc.want {
			t.Errorf("%s: Decide(%s) = %v, want %v", tc.name, show(tc.o), got, tc.want)
		}
	}
}

func TestActionString(t *testing.T) {
	for a, want := range map[Action]string{Use: "use", Wait: "wait", CleanUp: "clean-up", Delete: "delete", Stopped: "stopped"} {
		if got := a.String(); got != want {
			t.Errorf("Action(%d).String() = %q, want %q", int(a), got, want)
		}
	}
}

func observationOf(bits int) Observation {
	bit := func(i int) bool { return bits&(1<<i) != 0 }
	return Observation{
		Expired: bit(0), HaveBootstrap: bit(1), SupervisorAlive: bit(2),
		Answers: bit(3), VMMAlive: bit(4), RecordedRunning: bit(5),
	}
}

func fields(o Observation) [6]bool {
	return [6]bool{o.Expired, o.HaveBootstrap, o.SupervisorAlive, o.Answers, o.VMMAlive, o.RecordedRunning}
}

func matches(t *testing.T, pattern string, o Observation) bool {
	t.Helper()
	var p [6]byte
	if n, err := fmt.Sscanf(pattern, "%c %c %c %c %c %c", &p[0], &p[1], &p[2], &p[3], &p[4], &p[5]); err != nil || n != 6 {
		t.Fatalf("bad pattern %q", pattern)
	}
	for i, v := range fields(o) {
		switch p[i] {
		case '_':
		case 'T':
			if !v {
				return false
			}
		case 'F':
			if v {
				return false
			}
		default:
			t.Fatalf("bad pattern %q", pattern)
		}
	}
	return true
}

func show(o Observation) string {
	s := ""
	for i, v := range fields(o) {
		if i > 0 {
			s += " "
		}
		if v {
			s += "T"
		} else {
			s += "F"
		}
	}
	return s
}
