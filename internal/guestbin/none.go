//go:build !guestbin

package guestbin

var binary []byte
