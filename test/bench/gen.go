package main

//go:generate go tool bpf2go -target bpfel gen gen.c
