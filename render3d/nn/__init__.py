"""Neural-network building blocks shared by the zoo, the video models and the priors: transformer blocks with
grouped-query attention (:mod:`.transformer`), the diffusion noise schedule and DDIM update (:mod:`.schedule`),
and scalar embeddings (:mod:`.embeddings`)."""
