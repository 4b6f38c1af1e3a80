//go:build !race

package faults_test

// raceBuild: this test binary runs without the race detector.
const raceBuild = false
