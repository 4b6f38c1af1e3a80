package api

import (
	"strings"
	"testing"
)

// benchBodies are valid request bodies of the usual shapes.
var benchBodies = []struct{ name, body string }{
	{"minimal", `{"from":"+15550004444","to":"+15557654321","text":"Your appointment is tomorrow at 10:00. Reply C to confirm.","client_ref":"bench"}`},
	{"all_fields", `{"from":"+15550001111","to":"+447700900123","text":"Your scan results are attached.","media":[{"url":"https://cdn.example.com/a/scan-1.png","content_type":"image/png","size":52000},{"url":"https://cdn.example.com/a/report.pdf","content_type":"application/pdf"}],"client_ref":"order-12345","validity":"2h"}`},
	{"long_text", `{"from":"+15550004444","to":"+15557654321","text":"` + strings.Repeat("Your appointment is tomorrow at 10:00. ", 40) + `","client_ref":"bench"}`},
	{"unicode", `{"from":"+15550004444","to":"+15557654321","text":"` + strings.Repeat("Rendez-vous demain à 10 h 00 😀 — répondez C. ", 10) + `\n\"ok\"","client_ref":"bench"}`},
}

// BenchmarkDecodeRequest measures decodeRequest, the decoding and validation
// every POST /v1/messages and dry run goes through, on valid bodies.
// Run: go test -run='^$' -bench='DecodeRequest|ScanBody' ./api
func BenchmarkDecodeRequest(b *testing.B) {
	for _, bc := range benchBodies {
		body := []byte(bc.body)
		if _, _, e := decodeRequest(body, testLimits); e != nil {
			b.Fatalf("%s: %v", bc.name, e)
		}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if _, _, e := decodeRequest(body, testLimits); e != nil {
					b.Fatal(e)
				}
			}
		})
	}
}

// BenchmarkScanBody is the strict pre-scan alone (its share of
// BenchmarkDecodeRequest).
func BenchmarkScanBody(b *testing.B) {
	for _, bc := range benchBodies {
		body := []byte(bc.body)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if e := scanBody(body); e != nil {
					b.Fatal(e)
				}
			}
		})
	}
}
