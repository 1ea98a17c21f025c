"""Optimisers over a flat parameter vector: Hessian-free (with structural damping), SGD, Adam."""

SEQUENCES_PER_MINIBATCH = 1000  # the paper's unit of work: 1,000 sequences through a gradient or product
