// Package synthfaces generates a procedural, deterministic dataset of
// cartoon-like faces for training and evaluating Face0 without real photos.
//
// Identity attributes (skin tone, face shape, eyes, brows, hair, nose,
// mouth, facial hair, freckles, moles) are fixed per identity and never
// captioned; scene attributes (art style, background colour, hat, glasses,
// shirt colour, expression) change per image and are exactly what the
// caption names. Generate writes PNGs with sidecar captions and a
// metadata.jsonl per split; Measure probes an image for the background
// colour, hat and glasses to score text alignment; AttrEmbedding is the
// synthfaces-attr-64 identity embedding, a stand-in for a face embedder on
// this data. See README.md for the attribute lists, the caption grammar,
// the layout and the measured behaviour of the face-api embedder.
package synthfaces
