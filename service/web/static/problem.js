// An error the page shows through the catalogue (service/web/catalogue.py): a key and its values,
// never English text of its own.
export class Problem extends Error {
  constructor(key, values = {}) {
    super(key);
    this.key = key;
    this.values = values;
  }
}
