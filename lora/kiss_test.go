package lora_test

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
	"testing/iotest"

	"github.com/backpack-field/backpack/lora"
)

type kissFrame struct {
	Cmd  byte
	Data []byte
}

// decodeAll decodes every frame of b, collecting errors.
func decodeAll(t *testing.T, r io.Reader, max int) (frames []kissFrame, errs []error) {
	t.Helper()
	d := lora.NewDecoder(r, max)
	for range 10000 {
		cmd, data, err := d.Next()
		if err == io.EOF {
			return frames, errs
		}
		if err != nil {
			errs = append(errs, err)
			if _, ok := errors.AsType[*lora.FrameError](err); !ok {
				return frames, errs
			}
			continue
		}
		frames = append(frames, kissFrame{cmd, append([]byte{}, data...)})
	}
	t.Fatal("decoder does not terminate")
	return nil, nil
}

func TestAppendFrame(t *testing.T) {
	tests := []struct {
		name string
		cmd  byte
		data []byte
		want []byte
	}{
		{"empty", 0x00, nil, []byte{0xC0, 0x00, 0xC0}},
		{"plain", 0x00, []byte("hi"), []byte{0xC0, 0x00, 'h', 'i', 0xC0}},
		{"fend", 0x00, []byte{0xC0}, []byte{0xC0, 0x00, 0xDB, 0xDC, 0xC0}},
		{"fesc", 0x00, []byte{0xDB}, []byte{0xC0, 0x00, 0xDB, 0xDD, 0xC0}},
		{"escape order", 0x10, []byte{0xDB, 0xDC, 0xC0, 0xDD}, []byte{0xC0, 0x10, 0xDB, 0xDD, 0xDC, 0xDB, 0xDC, 0xDD, 0xC0}},
		{"port 15 return", 0xFF, []byte{1}, []byte{0xC0, 0xFF, 0x01, 0xC0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := lora.AppendFrame(nil, tt.cmd, tt.data)
			if !bytes.Equal(got, tt.want) {
				t.Errorf("AppendFrame = % x, want % x", got, tt.want)
			}
			frames, errs := decodeAll(t, bytes.NewReader(got), 0)
			if len(errs) != 0 || len(frames) != 1 || frames[0].Cmd != tt.cmd || !bytes.Equal(frames[0].Data, tt.data) {
				t.Errorf("decode = %v %v", frames, errs)
			}
		})
	}
}

func TestDecoder(t *testing.T) {
	f := func(cmd byte, s string) []byte { return lora.AppendFrame(nil, cmd, []byte(s)) }
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	tests := []struct {
		name    string
		in      []byte
		max     int
		want    []kissFrame
		wantErr []error
	}{
		{"garbage before", cat([]byte("noise"), f(0, "a"), f(0, "b")), 0,
			[]kissFrame{{0, []byte("a")}, {0, []byte("b")}}, nil},
		// A FEND both ends a frame and may start the next, so bytes
		// between two frames read as a frame of their own.
		{"garbage between", cat(f(0, "a"), []byte{1, 2, 3}, f(0, "b")), 0,
			[]kissFrame{{0, []byte("a")}, {1, []byte{2, 3}}, {0, []byte("b")}}, nil},
		{"back to back fends", cat([]byte{0xC0, 0xC0, 0xC0}, f(0, "a"), []byte{0xC0, 0xC0}), 0,
			[]kissFrame{{0, []byte("a")}}, nil},
		{"shared fend", []byte{0xC0, 0x00, 'a', 0xC0, 0x00, 'b', 0xC0}, 0,
			[]kissFrame{{0, []byte("a")}, {0, []byte("b")}}, nil},
		{"too long then resync", cat(f(0, "0123456789"), f(0, "ok")), 5,
			[]kissFrame{{0, []byte("ok")}}, []error{lora.ErrFrameTooLong}},
		{"exactly max", f(0, "0123"), 5, []kissFrame{{0, []byte("0123")}}, nil},
		{"bad escape", cat([]byte{0xC0, 0x00, 0xDB, 0x41, 0x42, 0xC0}, f(0, "ok")), 0,
			[]kissFrame{{0, []byte("ok")}}, []error{lora.ErrBadEscape}},
		{"escape then fend", cat([]byte{0xC0, 0x00, 'x', 0xDB, 0xC0}, f(0, "ok")), 0,
			[]kissFrame{{0, []byte("ok")}}, []error{lora.ErrBadEscape}},
		{"cut off", []byte{0xC0, 0x00, 'a'}, 0, nil, []error{io.ErrUnexpectedEOF}},
		{"only garbage", []byte("hello world"), 0, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, r := range []struct {
				name string
				r    io.Reader
			}{{"whole", bytes.NewReader(tt.in)}, {"byte by byte", iotest.OneByteReader(bytes.NewReader(tt.in))}} {
				frames, errs := decodeAll(t, r.r, tt.max)
				if !reflect.DeepEqual(tt.want, frames) {
					t.Errorf("%s: frames %v, want %v", r.name, frames, tt.want)
				}
				if len(errs) != len(tt.wantErr) {
					t.Fatalf("%s: errors %v, want %v", r.name, errs, tt.wantErr)
				}
				for i := range errs {
					if !errors.Is(errs[i], tt.wantErr[i]) {
						t.Errorf("%s: error %v, want %v", r.name, errs[i], tt.wantErr[i])
					}
				}
			}
		})
	}
}

func TestDecoderErrorOffset(t *testing.T) {
	in := []byte{'x', 0xC0, 0x00, 0xDB, 0x41}
	_, _, err := lora.NewDecoder(bytes.NewReader(in), 0).Next()
	fe, ok := errors.AsType[*lora.FrameError](err)
	if !ok || fe.Offset != 4 {
		t.Fatalf("err = %v, want a FrameError at offset 4", err)
	}
}

func TestDecoderReadError(t *testing.T) {
	boom := errors.New("boom")
	r := io.MultiReader(bytes.NewReader(lora.AppendFrame(nil, 0, []byte("a"))), iotest.ErrReader(boom))
	d := lora.NewDecoder(r, 0)
	if _, data, err := d.Next(); err != nil || string(data) != "a" {
		t.Fatalf("first = %q, %v", data, err)
	}
	if _, _, err := d.Next(); !errors.Is(err, boom) {
		t.Fatalf("second err = %v, want boom", err)
	}
}
