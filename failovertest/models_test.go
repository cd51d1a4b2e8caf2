package failovertest_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/llmfailover/failover/failovertest"
	"github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A GET has no request body: the in-memory transport must not panic on it.
func TestInMemoryGetWithoutBody(t *testing.T) {
	srv := failovertest.NewServer()
	req, err := http.NewRequest(http.MethodGet, failovertest.BaseURL+"/models", nil)
	require.NoError(t, err)
	req.Body = nil // as a client that builds the request by hand may leave it
	req.Header.Set("Authorization", "Bearer k")
	resp, err := srv.HTTPClient().Transport.RoundTrip(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, 1, srv.Calls("k"))
}

// go-openai's ListModels and GetModel, in memory and over the network,
// return the models set; an unknown id is OpenAI's 404.
func TestModels(t *testing.T) {
	for _, network := range []bool{false, true} {
		t.Run(fmt.Sprint("network=", network), func(t *testing.T) {
			srv := failovertest.NewServer()
			if network {
				srv.Start()
				t.Cleanup(srv.Close)
			}
			srv.SetModels("gpt-4o", "openai/gpt-4o-mini")
			c := openai.NewClientWithConfig(srv.Config("k"))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()

			list, err := c.ListModels(ctx)
			require.NoError(t, err)
			var ids []string
			for _, m := range list.Models {
				ids = append(ids, m.ID)
				assert.Equal(t, "model", m.Object)
				assert.NotZero(t, m.CreatedAt)
				assert.NotEmpty(t, m.OwnedBy)
			}
			assert.Equal(t, []string{"gpt-4o", "openai/gpt-4o-mini"}, ids)

			for _, id := range ids {
				m, err := c.GetModel(ctx, id)
				require.NoError(t, err)
				assert.Equal(t, id, m.ID)
			}

			_, err = c.GetModel(ctx, "gpt-nope")
			var ae *openai.APIError
			require.ErrorAs(t, err, &ae)
			assert.Equal(t, 404, ae.HTTPStatusCode)
			assert.Equal(t, "model_not_found", ae.Code)
			assert.Contains(t, ae.Message, "gpt-nope")

			assert.Equal(t, 4, srv.Calls("k"), "models calls count like any other")
			reqs := srv.Requests("k")
			assert.Equal(t, "/v1/models", reqs[0].Path)
			assert.Equal(t, "gpt-4o", reqs[1].Model, "the id asked for")
		})
	}
}

// A script answers every path of its key: a revoked key cannot list.
func TestModelsScripted(t *testing.T) {
	srv := failovertest.NewServer()
	srv.SetModels("m")
	srv.Script("revoked", failovertest.Unauthorized())
	_, err := openai.NewClientWithConfig(srv.Config("revoked")).ListModels(context.Background())
	var ae *openai.APIError
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, 401, ae.HTTPStatusCode)
	list, err := openai.NewClientWithConfig(srv.Config("k")).ListModels(context.Background())
	require.NoError(t, err)
	assert.Len(t, list.Models, 1)
	srv.SetModels()
	list, err = openai.NewClientWithConfig(srv.Config("k")).ListModels(context.Background())
	require.NoError(t, err)
	assert.Empty(t, list.Models, "no models set: an empty list")
}

func ExampleServer_SetModels() {
	srv := failovertest.NewServer()
	srv.SetModels("gpt-4o", "gpt-4o-mini")
	client := openai.NewClientWithConfig(srv.Config("key"))

	list, err := client.ListModels(context.Background())
	if err != nil {
		panic(err)
	}
	for _, m := range list.Models {
		fmt.Println(m.ID)
	}
	_, err = client.GetModel(context.Background(), "gpt-5-nope")
	fmt.Println(err.(*openai.APIError).HTTPStatusCode)
	// Output:
	// gpt-4o
	// gpt-4o-mini
	// 404
}
