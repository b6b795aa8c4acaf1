package main

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"os"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// writePlot draws the drop rates of the floors (a) and (r), xdp-filter
// (f), xdpguard under the minimal (b0) and the security-group policy (s),
// and nftables (c, with the legitimate client) side by side.
func writePlot(path string, wire []wireResult) error {
	const w, h, top, bottom, left = 640, 360, 40, 70, 40
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)
	text := func(x, y int, s string) {
		d := font.Drawer{Dst: img, Src: image.Black, Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
		d.DrawString(s)
	}
	text(left, 20, "SYN flood drop rate on veth (Mpps, higher is better)")
	colors := map[string]color.RGBA{"a": {150, 150, 150, 255}, "r": {120, 120, 120, 255}, "f": {120, 180, 90, 255}, "b0": {90, 150, 220, 255}, "s": {40, 110, 200, 255}, "c": {220, 120, 40, 255}}
	labels := map[string]string{"a": "floor", "r": "read+drop", "f": "xdp-filter", "b0": "xdpguard", "s": "sec. group", "c": "nftables"}
	var bars []wireResult
	maxv := 0.0
	for _, r := range wire {
		if _, ok := labels[r.Key]; ok {
			bars = append(bars, r)
			maxv = max(maxv, r.Mpps)
		}
	}
	if maxv == 0 {
		maxv = 1
	}
	slot := (w - 2*left) / max(len(bars), 1)
	for i, r := range bars {
		bh := int(float64(h-top-bottom) * r.Mpps / maxv)
		x0 := left + i*slot + slot/6
		rect := image.Rect(x0, h-bottom-bh, x0+slot*2/3, h-bottom)
		draw.Draw(img, rect, &image.Uniform{colors[r.Key]}, image.Point{}, draw.Src)
		text(x0, h-bottom-bh-6, fmt.Sprintf("%.2f", r.Mpps))
		text(x0, h-bottom+18, fmt.Sprintf("(%s) %s", r.Key, labels[r.Key]))
	}
	draw.Draw(img, image.Rect(left-2, h-bottom, w-left, h-bottom+1), image.Black, image.Point{}, draw.Src)
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return png.Encode(f, img)
}
