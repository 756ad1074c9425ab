//go:build guestbin

package guestbin

import _ "embed"

// pyro-guest is written by `make build` before it builds pyro with the
// guestbin tag; it is not in the repository.
//
//go:embed pyro-guest
var binary []byte
