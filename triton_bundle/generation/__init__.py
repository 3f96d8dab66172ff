"""Text generation: the decoder's tokenizer and corpus helpers, in-process onnxruntime decoding, LM metrics."""
