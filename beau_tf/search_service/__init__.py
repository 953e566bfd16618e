"""The search service: a long-running HTTP server that finds catalogue
products in uploaded photos (python -m beau_tf.serve).

  embedders        the model, local SavedModel or TF Serving, as one adapter
  batching         micro-batching of concurrent requests into one model call
  index_versions   the served index, hot-swapped for newer numbered versions
  searcher         upload checks, embedding, search, thumbnails (no HTTP)
  app              the FastAPI app over a searcher
"""
