package failover

import (
	"bytes"
	"context"
	"fmt"
	"io"

	"github.com/sashabaranov/go-openai"
)

// MaxFileBody bounds a file that a request carries as an io.Reader (the
// image of CreateEditImage and CreateVariImage, the audio of
// CreateTranscription and CreateTranslation): it is read into memory once
// so that each member gets the same bytes. It is OpenAI's upload limit for
// audio; a larger file fails with ErrInvalid before any call. A FilePath is
// not read ahead: go-openai opens the file anew for each member.
const MaxFileBody = 25 << 20

// CreateImage is openai.Client.CreateImage with failover.
func (o *OpenAI) CreateImage(ctx context.Context, req openai.ImageRequest) (openai.ImageResponse, error) {
	return serve(ctx, o, textTokens(len(req.Prompt)), func(ctx context.Context, m Member[*openai.Client]) (openai.ImageResponse, error) {
		r := req
		if m.Model != "" {
			r.Model = m.Model
		}
		return m.Client.CreateImage(ctx, r)
	}, ForModel(req.Model))
}

// CreateEditImage is openai.Client.CreateEditImage with failover. The
// image and mask are read once (at most [MaxFileBody] each) and replayed,
// byte for byte and with their name and content type, to each member.
func (o *OpenAI) CreateEditImage(ctx context.Context, req openai.ImageEditRequest) (openai.ImageResponse, error) {
	image, err := replayable(req.Image, "the image")
	if err != nil {
		return openai.ImageResponse{}, err
	}
	mask, err := replayable(req.Mask, "the mask")
	if err != nil {
		return openai.ImageResponse{}, err
	}
	return serve(ctx, o, textTokens(len(req.Prompt)), func(ctx context.Context, m Member[*openai.Client]) (openai.ImageResponse, error) {
		r := req
		r.Image, r.Mask = image.reader(), mask.reader()
		if m.Model != "" {
			r.Model = m.Model
		}
		return m.Client.CreateEditImage(ctx, r)
	}, ForModel(req.Model))
}

// CreateVariImage is openai.Client.CreateVariImage with failover. The
// image is read once (at most [MaxFileBody]) and replayed to each member.
func (o *OpenAI) CreateVariImage(ctx context.Context, req openai.ImageVariRequest) (openai.ImageResponse, error) {
	image, err := replayable(req.Image, "the image")
	if err != nil {
		return openai.ImageResponse{}, err
	}
	return serve(ctx, o, 1, func(ctx context.Context, m Member[*openai.Client]) (openai.ImageResponse, error) {
		r := req
		r.Image = image.reader()
		if m.Model != "" {
			r.Model = m.Model
		}
		return m.Client.CreateVariImage(ctx, r)
	}, ForModel(req.Model))
}

// CreateSpeech is openai.Client.CreateSpeech with failover. The caller
// closes the returned audio, as with go-openai.
func (o *OpenAI) CreateSpeech(ctx context.Context, req openai.CreateSpeechRequest) (openai.RawResponse, error) {
	return serve(ctx, o, textTokens(len(req.Input)), func(ctx context.Context, m Member[*openai.Client]) (openai.RawResponse, error) {
		r := req
		if m.Model != "" {
			r.Model = openai.SpeechModel(m.Model)
		}
		return m.Client.CreateSpeech(ctx, r)
	}, ForModel(string(req.Model)))
}

// CreateTranscription is openai.Client.CreateTranscription with failover.
// An audio Reader is read once (at most [MaxFileBody]) and replayed to
// each member; a FilePath is opened anew by each attempt.
func (o *OpenAI) CreateTranscription(ctx context.Context, req openai.AudioRequest) (openai.AudioResponse, error) {
	return o.audio(ctx, req, (*openai.Client).CreateTranscription)
}

// CreateTranslation is openai.Client.CreateTranslation with failover,
// replaying the audio as [OpenAI.CreateTranscription] does.
func (o *OpenAI) CreateTranslation(ctx context.Context, req openai.AudioRequest) (openai.AudioResponse, error) {
	return o.audio(ctx, req, (*openai.Client).CreateTranslation)
}

func (o *OpenAI) audio(ctx context.Context, req openai.AudioRequest, call func(*openai.Client, context.Context, openai.AudioRequest) (openai.AudioResponse, error)) (openai.AudioResponse, error) {
	audio, err := replayable(req.Reader, "the audio")
	if err != nil {
		return openai.AudioResponse{}, err
	}
	return serve(ctx, o, textTokens(len(req.Prompt)), func(ctx context.Context, m Member[*openai.Client]) (openai.AudioResponse, error) {
		r := req
		if req.Reader != nil {
			r.Reader = audio.reader()
		}
		if m.Model != "" {
			r.Model = m.Model
		}
		return call(m.Client, ctx, r)
	}, ForModel(req.Model))
}

// fileBody is a file read into memory once, replayed to each attempt.
type fileBody struct {
	data        []byte
	name, ctype string
	set         bool
}

// replayable reads r (nil is no file) into memory, at most MaxFileBody
// bytes, keeping its Name and ContentType, which go-openai uses for the
// form part.
func replayable(r io.Reader, what string) (*fileBody, error) {
	if isNil(r) {
		return &fileBody{}, nil
	}
	b, err := io.ReadAll(io.LimitReader(r, MaxFileBody+1))
	if err != nil {
		return nil, fmt.Errorf("failover: reading %s: %w", what, err)
	}
	if len(b) > MaxFileBody {
		return nil, fmt.Errorf("%w: %s is larger than %d MiB", ErrInvalid, what, MaxFileBody>>20)
	}
	f := &fileBody{data: b, set: true}
	if n, ok := r.(interface{ Name() string }); ok {
		f.name = n.Name()
	}
	if c, ok := r.(interface{ ContentType() string }); ok {
		f.ctype = c.ContentType()
	}
	return f, nil
}

// reader returns a fresh reader of the file, or nil for no file.
func (f *fileBody) reader() io.Reader {
	if !f.set {
		return nil
	}
	return &replayReader{Reader: bytes.NewReader(f.data), name: f.name, ctype: f.ctype}
}

// replayReader is one attempt's copy of a file, with the original's name
// and content type ("" when it had none, which go-openai treats alike).
type replayReader struct {
	*bytes.Reader
	name, ctype string
}

func (r *replayReader) Name() string        { return r.name }
func (r *replayReader) ContentType() string { return r.ctype }
