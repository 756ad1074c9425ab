package store

import (
	"testing"
	"time"
)

func TestRecordExpiry(t *testing.T) {
	last := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name    string
		ttl     int
		now     time.Time
		expires time.Time
		expired bool
	}{
		{"no TTL never expires", 0, last.Add(1000 * time.Hour), last, false},
		{"before the end", 60, last.Add(59 * time.Second), last.Add(time.Minute), false},
		{"exactly at the end", 60, last.Add(time.Minute), last.Add(time.Minute), false},
		{"just after the end", 60, last.Add(time.Minute + time.Nanosecond), last.Add(time.Minute), true},
		{"long after", 3600, last.Add(48 * time.Hour), last.Add(time.Hour), true},
		{"clock before the last activity", 60, last.Add(-time.Hour), last.Add(time.Minute), false},
	} {
		r := &Record{LastActivity: last, TTLSeconds: tc.ttl}
		if got := r.ExpiresAt(); !got.Equal(tc.expires) {
			t.Errorf("%s: ExpiresAt = %v, want %v", tc.name, got, tc.expires)
		}
		if got := r.Expired(tc.now); got != tc.expired {
			t.Errorf("%s: Expired(%v) = %v, want %v", tc.name, tc.now, got, tc.expired)
		}
	}
}

// The TTL runs from the last activity, not from creation.
func TestRecordExpiryFollowsActivity(t *testing.T) {
	created := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	r := &Record{CreatedAt: created, LastActivity: created, TTLSeconds: 600}
	now := created.Add(15 * time.Minute)
	if !r.Expired(now) {
		t.Fatalf("idle for 15 minutes with a 10-minute TTL: not expired")
	}
	r.LastActivity = created.Add(10 * time.Minute)
	if r.Expired(now) {
		t.Errorf("active 5 minutes ago with a 10-minute TTL: expired")
	}
}
