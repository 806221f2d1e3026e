"""Forms: templates and their check digits, aligning a page to its template, previews."""
