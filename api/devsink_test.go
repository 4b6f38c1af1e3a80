package api

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/smsgate/smsgate/config"
)

func TestDevSink(t *testing.T) {
	e := newEnv(t, func(o *Options, _ *config.Config) { o.DevSink = true })
	r := e.do(http.MethodGet, "/dev/events", "", "")
	require.Equal(t, 200, r.status)
	require.Equal(t, "[]\n", string(r.raw))

	for i := range devSinkSize + 5 {
		r := e.do(http.MethodPost, "/dev/events", "", fmt.Sprintf(`{"id":"evt_%d","type":"message.status"}`, i), "Smsgate-Event-Id", fmt.Sprint("evt_", i))
		require.Equal(t, 204, r.status)
	}
	r = e.do(http.MethodPost, "/dev/events", "", "not json <b>")
	require.Equal(t, 204, r.status)

	req, err := http.NewRequest(http.MethodGet, e.base+"/dev/events", nil)
	require.NoError(t, err)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	var list []DevEvent
	require.NoError(t, jsonDecode(res.Body, &list))
	require.Len(t, list, devSinkSize)
	require.Equal(t, "not json <b>", list[0].Text, "newest first")
	require.Equal(t, fmt.Sprint("evt_", devSinkSize+4), list[1].EventID)
	require.JSONEq(t, fmt.Sprintf(`{"id":"evt_%d","type":"message.status"}`, devSinkSize+4), string(list[1].Body))
	require.Equal(t, "evt_6", list[devSinkSize-1].EventID, "oldest kept")

	page := e.do(http.MethodGet, "/dev/", "", "")
	require.Equal(t, 200, page.status)
	html := string(page.raw)
	require.Contains(t, html, `http-equiv="refresh"`)
	require.Contains(t, html, "not json &lt;b&gt;", "bodies are escaped")
	require.Contains(t, html, "evt_204")
	require.True(t, strings.Index(html, "evt_204") < strings.Index(html, "evt_203"), "newest first")
}
