// Package lint holds house-rule checks that run as tests over the model
// packages' source (see blankerr_test.go). It has no exported API.
package lint
