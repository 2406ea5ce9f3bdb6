"""Image classifier from vision-model descriptions (or header facts): train, evaluate, predict.

A vision-language model writes several descriptions of each image (:mod:`.describe`), each is
embedded (:mod:`engine.llm.embed`), and StandardScaler + SVC is trained on the vectors with
cross-validation grouped by image (:mod:`.model`). Descriptions and vectors are cached by image
hash, prompt and model (:mod:`.cache`), so a re-run or another classifier costs nothing.
:mod:`.workspace` trains on a reviewed MRI workspace and gives each group a second opinion.
"""
