"""Reading digits: decode a scan, clean it, find its digits, classify them, choose the string.

The data path, one module per step, with `pipeline` orchestrating (fetching, then the steps
up to segmenting concurrently per image, the models in batches over all of them):

    decode → preprocess → segment → infer → choose

`decode` turns bytes into a gray plane; `preprocess` cleans it into ink and frames one digit
MNIST-style; `segment` takes the print out (`printed`) and finds the marks on the line of
writing and what is left out, offering them as digit candidates (`pieces`: runs of marks,
cuts of touching digits); `inference` runs the CNN and the string reader; `choose` weighs
their outputs and picks each field's string, from which `pipeline` builds the Reading.
`lines` renders the string reader's training lines through the same path.
"""
