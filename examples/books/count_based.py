"""Chapter 2 of "Deep Learning from Scratch 2" with its imports rewritten for xpnet: word vectors
from counts (co-occurrence matrix, PPMI, SVD) and the words closest to a query.

    python examples/books/count_based.py
"""

import numpy as np

from xpnet.dlfs2.util import cos_similarity, create_co_matrix, most_similar, ppmi, preprocess

text = "You say goodbye and I say hello."


def main():
    corpus, word_to_id, id_to_word = preprocess(text)
    vocab_size = len(word_to_id)
    C = create_co_matrix(corpus, vocab_size, window_size=1)
    W = ppmi(C)

    np.set_printoptions(precision=3)
    print("covariance matrix")
    print(C)
    print("-" * 50)
    print("PPMI")
    print(W)

    c0, c1 = C[word_to_id["you"]], C[word_to_id["i"]]
    print("cos(you, i) =", float(cos_similarity(c0, c1)))

    U, S, V = np.linalg.svd(W)
    word_vecs = U[:, :2]
    print("SVD: first two dimensions of 'you':", word_vecs[word_to_id["you"]])
    most_similar("you", word_to_id, id_to_word, word_vecs, top=5)


if __name__ == "__main__":
    main()
