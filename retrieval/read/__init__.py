"""Reading retrieved passages: candidate sentences, their features, and the trained reader that scores them."""
